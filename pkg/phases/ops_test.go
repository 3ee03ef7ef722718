package phases

import (
	"context"
	"strings"
	"testing"
	"time"
)

// pollOut is what the poller prints: n answers 100ms apart with failed polls in the middle.
func pollOut(fails int) string {
	var b strings.Builder
	ts := int64(1e18)
	for i := 0; i < 5; i++ {
		b.WriteString(itoa(ts) + " ok\n")
		ts += 100e6
	}
	for i := 0; i < fails; i++ {
		b.WriteString(itoa(ts) + " fail\n")
		ts += 100e6
	}
	for i := 0; i < 5; i++ {
		b.WriteString(itoa(ts) + " ok\n")
		ts += 100e6
	}
	return b.String()
}

func TestDrill(t *testing.T) {
	top := refTopology(t)
	w := doneWorld(t, top)
	// The stop/restart commands succeed; the state they change is what the probes answer.
	for _, tag := range []string{"change drill/stop-vipd", "change drill/restore-vipd", "change drill/poll-stop", "change drill/stop-master", "change drill/restore-master"} {
		w.set("*", tag, answer{})
	}
	stopped := func(w *world, host, stop, restore string) bool {
		s, r := -1, -1
		for i, c := range w.calls {
			if c == host+": change "+stop {
				s = i
			}
			if c == host+": change "+restore {
				r = i
			}
		}
		return s >= 0 && r < s
	}
	vip := "2: ens33    inet 192.168.10.100/24 scope global secondary ens33\n"
	w.set("lb1", "probe lb/vip", answer{fn: func(w *world, _ string) answer {
		if stopped(w, "lb1", "drill/stop-vipd", "drill/restore-vipd") {
			return answer{}
		}
		return answer{out: vip}
	}})
	w.set("lb2", "probe lb/vip", answer{fn: func(w *world, _ string) answer {
		if stopped(w, "lb1", "drill/stop-vipd", "drill/restore-vipd") {
			return answer{out: vip}
		}
		return answer{}
	}})
	polls := 0
	w.set("k8s-master-3", "probe drill/poll", answer{fn: func(w *world, _ string) answer {
		polls++
		// First poll: the vipd failover (13 failed polls); then a short failback; then the
		// master stop, during which every poll answered.
		return answer{out: pollOut(map[int]int{1: 13, 2: 2}[polls])}
	}})
	w.set("*", "probe drill/healthz", answer{fn: func(w *world, cmd string) answer {
		if strings.Contains(cmd, "192.168.10.138:6443") && stopped(w, "k8s-master-1", "drill/stop-master", "drill/restore-master") {
			return answer{code: 7}
		}
		return answer{out: "ok"}
	}})
	w.set("*", "probe drill/vipd-active", answer{out: "active\n"})
	w.set("*", "probe drill/kubectl", answer{out: nodesOut(top, "")})

	r, out := newTestRunner(t, top, w, false)
	rs, err := r.Drill(context.Background(), DrillOptions{Baseline: time.Millisecond, Settle: time.Millisecond, Poll: time.Millisecond, Wait: 2 * time.Second})
	if err != nil {
		t.Fatalf("drill: %v\n%s", err, out)
	}
	if len(w.unexpected) > 0 {
		t.Errorf("unexpected commands: %v", w.unexpected)
	}
	table := FormatDrill(rs)
	if len(rs) != 4 || !DrillPassed(rs) {
		t.Fatalf("results:\n%s\n%s", table, out)
	}
	if rs[0].Outage != 1400*time.Millisecond || !strings.Contains(rs[0].Detail, "VIP moved to lb2") {
		t.Errorf("vipd step: %+v", rs[0])
	}
	if rs[1].Outage != 300*time.Millisecond || !strings.Contains(rs[1].Detail, "VIP on lb1") {
		t.Errorf("failback step: %+v", rs[1])
	}
	if rs[2].Outage != 0 || !strings.Contains(rs[2].Step, "k8s-master-1") {
		t.Errorf("master step: %+v", rs[2])
	}
	for _, want := range []string{"stop vipd on lb1 (VIP holder)", "pass    1.40s", "restore kubelet + apiserver on k8s-master-1"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	// Everything stopped was restored.
	if stopped(w, "lb1", "drill/stop-vipd", "drill/restore-vipd") || stopped(w, "k8s-master-1", "drill/stop-master", "drill/restore-master") {
		t.Error("the drill left a service stopped")
	}
}

func TestDrillFailsWhenTheVIPDoesNotMove(t *testing.T) {
	top := refTopology(t)
	w := doneWorld(t, top)
	for _, tag := range []string{"change drill/stop-vipd", "change drill/restore-vipd", "change drill/poll-stop", "change drill/stop-master", "change drill/restore-master"} {
		w.set("*", tag, answer{})
	}
	w.set("*", "probe drill/poll", answer{out: pollOut(0)})
	w.set("*", "probe drill/healthz", answer{out: "ok"})
	w.set("*", "probe drill/vipd-active", answer{out: "active\n"})
	w.set("*", "probe drill/kubectl", answer{out: nodesOut(top, "")})
	r, _ := newTestRunner(t, top, w, false)
	rs, err := r.Drill(context.Background(), DrillOptions{Baseline: time.Millisecond, Settle: time.Millisecond, Poll: time.Millisecond, Wait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if DrillPassed(rs) || rs[0].Pass || !strings.Contains(rs[0].Detail, "did not move") {
		t.Errorf("a VIP that never moved passed:\n%s", FormatDrill(rs))
	}
	if !strings.Contains(strings.Join(w.calls, "\n"), "lb1: change drill/restore-vipd") {
		t.Error("vipd not restarted after the failed step")
	}
}

func TestStatus(t *testing.T) {
	top := refTopology(t)
	w := doneWorld(t, top)
	w.set("*", "probe status/vipd", answer{out: "active\n"})
	w.set("k8s-worker-1", "probe common", answer{out: strings.Replace(commonProbeDone(top), "held kubeadm kubectl kubelet", "held", 1)})
	w.set("*", "probe cluster/nodes", answer{out: strings.Replace(nodesOut(top, ""), "k8s-worker-1   Ready", "k8s-worker-1   NotReady", 1)})
	r, _ := newTestRunner(t, top, w, false)
	sts := r.Status(context.Background())
	table := FormatStatus(sts, "192.168.10.100/24")
	for _, want := range []string{
		"k8s-master-1     master  192.168.10.138   yes       common,init,cni",
		"k8s-worker-1     worker  192.168.10.142   yes       join-workers (common)",
		"NotReady",
		"lb1              lb      192.168.10.141   yes       lb                             vipd active  holder",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("status lacks %q:\n%s", want, table)
		}
	}
	if ch := w.changes(); len(ch) > 0 {
		t.Errorf("status changed hosts: %v", ch)
	}
}

func TestReset(t *testing.T) {
	top := refTopology(t)
	w := newWorld()
	w.set("*", "probe reset", answer{out: "kubeadm\nhas /etc/kubernetes/kubelet.conf\n"})
	w.set("lb1", "probe reset", answer{out: "has /etc/systemd/system/vipd.service\nhas user\nvip ens33\n"})
	w.set("lb2", "probe reset", answer{out: ""})
	w.set("*", "change kubeadm reset", answer{})
	w.set("*", "change remove vipd", answer{})
	r, out := newTestRunner(t, top, w, false)
	if err := r.Reset(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"[k8s-worker-1] reset: kubeadm reset -f done", "[lb1] reset: vipd stopped, disabled and removed; VIP 192.168.10.100/24 removed", "[lb2] reset: nothing to reset"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var lbCmd string
	for _, c := range w.cmds {
		if strings.HasPrefix(c, "lb1: # change remove vipd") {
			lbCmd = c
		}
	}
	for _, want := range []string{"dpkg --purge vipd", "systemctl disable --now vipd", "rm -f /etc/systemd/system/vipd.service /usr/local/bin/vipd", "rm -rf /etc/vipd", "ip addr del 192.168.10.100/24 dev", "userdel vipd"} {
		if !strings.Contains(lbCmd, want) {
			t.Errorf("lb reset lacks %q:\n%s", want, lbCmd)
		}
	}
}
