package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/vipd-project/vipd/test/standin/internal/sim"
)

// upgradeCmd is `kubeadm upgrade plan [VERSION] | apply VERSION [-y] | node`, as far as
// bootstrap upgrade needs it: the version rules of the real kubeadm (one minor at a time,
// never past kubeadm's own version), the cluster's version raised by apply, and the local
// apiserver's static pod manifest rewritten to the new version (the stand-in kubelet then
// restarts the apiserver, which reports it on /version).
func upgradeCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return exitError{1, "stand-in kubeadm: upgrade plan|apply|node"}
	}
	f, err := parseFlags(args[1:], map[string]bool{"yes": true, "y": true, "force": true, "certificate-renewal": false,
		"etcd-upgrade": false, "config": false, "ignore-preflight-errors": false, "dry-run": true, "allow-experimental-upgrades": true})
	if err != nil {
		return err
	}
	kc := sim.AdminConf
	if _, err := os.Stat(kc); err != nil {
		kc = sim.KubeletConf
	}
	c, _, err := adminClient(kc)
	if err != nil {
		return exitError{1, "[upgrade/config] FATAL: " + err.Error()}
	}
	var ci sim.ClusterInfo
	if err := c.Do(ctx, http.MethodGet, "/standin/cluster-info", nil, &ci); err != nil {
		return exitError{1, "[upgrade/config] FATAL: failed to get config map: " + err.Error()}
	}
	cur := ci.Version
	if cur == "" {
		cur = sim.Version
	}
	switch args[0] {
	case "plan", "apply":
		target := sim.Version
		if len(f.pos) > 0 {
			target = "v" + strings.TrimPrefix(f.pos[0], "v")
		} else if args[0] == "apply" {
			return exitError{1, "[upgrade/version] FATAL: missing one or more required arguments. Required arguments: [version]"}
		}
		if err := checkUpgrade(cur, target); err != nil {
			return err
		}
		if args[0] == "plan" {
			fmt.Printf("[upgrade/config] Reading configuration from the \"kubeadm-config\" ConfigMap in namespace \"kube-system\"...\n[upgrade] Fetching available versions to upgrade to\n")
			fmt.Printf("Upgrade to the latest version in the v1.%d series:\n\nCOMPONENT                 NODE      CURRENT   TARGET\nkube-apiserver            %s   %s   %s\n\nYou can now apply the upgrade by executing the following command:\n\n\tkubeadm upgrade apply %s\n", sim.Minor(target), hostname(), cur, target, target)
			return nil
		}
		if !f.has("yes") && !f.has("y") && !f.has("force") {
			return exitError{1, "[upgrade] FATAL: won't proceed; the user didn't answer (Y|y) in order to continue (stand-in: pass --yes)"}
		}
		if _, err := os.Stat(sim.APIManifest); err != nil {
			return exitError{1, "[upgrade/apply] FATAL: this is not a control-plane node: " + sim.APIManifest + " is missing"}
		}
		fmt.Printf("[upgrade/version] You have chosen to change the cluster version to %q\n", target)
		if err := upgradeLocalControlPlane(ctx, target); err != nil {
			return err
		}
		if err := c.Do(ctx, http.MethodPut, "/standin/version", sim.Entry{Value: target}, nil); err != nil {
			return exitError{1, "[upgrade/apply] FATAL: failed to update the kubeadm-config ConfigMap: " + err.Error()}
		}
		fmt.Printf("[upgrade] SUCCESS! A control plane node of your cluster was upgraded to %q.\n", target)
		return nil
	case "node":
		if _, err := os.Stat(sim.APIManifest); err == nil {
			if sim.Minor(cur) > sim.Minor(sim.Version) || (sim.Minor(cur) == sim.Minor(sim.Version) && cur > sim.Version) {
				return exitError{1, fmt.Sprintf("[upgrade/node] FATAL: the cluster is at %s, newer than this kubeadm (%s): upgrade kubeadm first", cur, sim.Version)}
			}
			if err := upgradeLocalControlPlane(ctx, cur); err != nil {
				return err
			}
		}
		fmt.Println("[upgrade/kubelet-config] The kubelet configuration for this node was successfully upgraded!\n[upgrade] The configuration for this node was successfully upgraded!")
		return nil
	}
	return exitError{1, fmt.Sprintf("unknown command %q for \"kubeadm upgrade\"", args[0])}
}

// checkUpgrade applies kubeadm's version rules.
func checkUpgrade(cur, target string) error {
	switch {
	case sim.Minor(target) > sim.Minor(sim.Version) || (sim.Minor(target) == sim.Minor(sim.Version) && target > sim.Version):
		return exitError{1, fmt.Sprintf("[upgrade/version] FATAL: the --version argument is invalid due to these errors:\n\n\t- Specified version to upgrade to %q is higher than the kubeadm version %q. Upgrade kubeadm first using the tool you used to install kubeadm", target, sim.Version)}
	case sim.Minor(target) > sim.Minor(cur)+1:
		return exitError{1, fmt.Sprintf("[upgrade/version] FATAL: the --version argument is invalid due to these errors:\n\n\t- Specified version to upgrade to %q is too high; kubeadm can upgrade only 1 minor version at a time", target)}
	case sim.Minor(target) < sim.Minor(cur):
		return exitError{1, fmt.Sprintf("[upgrade/version] FATAL: the --version argument is invalid due to these errors:\n\n\t- Specified version to upgrade to %q is an unsupported downgrade from %q", target, cur)}
	}
	return nil
}

var (
	reVersionArg = regexp.MustCompile(`(?m)^(\s*- --standin-version=)\S+$`)
	reImage      = regexp.MustCompile(`(kube-apiserver:)v\S+`)
)

// upgradeLocalControlPlane rewrites the apiserver manifest to version and waits until the
// restarted apiserver reports it and is ready.
func upgradeLocalControlPlane(ctx context.Context, version string) error {
	b, err := os.ReadFile(sim.APIManifest)
	if err != nil {
		return exitError{1, "[upgrade/staticpods] FATAL: " + err.Error()}
	}
	m := string(b)
	if reVersionArg.MatchString(m) {
		m = reVersionArg.ReplaceAllString(m, "${1}"+version)
	} else {
		m = strings.Replace(m, "    image: ", "    - --standin-version="+version+"\n    image: ", 1)
	}
	m = reImage.ReplaceAllString(m, "${1}"+version)
	if m != string(b) {
		fmt.Printf("[upgrade/staticpods] Writing new Static Pod manifests to %q\n[upgrade/staticpods] Moving new manifest to %q and backing up old manifest\n", sim.ManifestsDir, sim.APIManifest)
		if err := sim.WriteFileAtomic(sim.APIManifest, []byte(m), 0o600); err != nil {
			return exitError{1, "[upgrade/staticpods] FATAL: " + err.Error()}
		}
	}
	ns, err := sim.ReadNodeState()
	if err != nil {
		return exitError{1, "[upgrade/staticpods] FATAL: " + err.Error()}
	}
	base := "https://" + ns.Address + ":6443"
	c := sim.NewClient(base, sim.TLSConfig(nil, nil, nil), 2*time.Second)
	fmt.Printf("[upgrade/staticpods] Waiting for the kubelet to restart the component\n")
	deadline := time.Now().Add(waitTimeout)
	for {
		var v map[string]any
		var ready string
		if c.Do(ctx, http.MethodGet, "/version", nil, &v) == nil && v["gitVersion"] == version && c.Do(ctx, http.MethodGet, "/readyz", nil, &ready) == nil {
			fmt.Printf("[upgrade/staticpods] Component \"kube-apiserver\" upgraded successfully!\n")
			return nil
		}
		if time.Now().After(deadline) {
			return exitError{1, fmt.Sprintf("[upgrade/staticpods] FATAL: the kube-apiserver at %s does not report %s and ready after %s", base, version, waitTimeout)}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}
