package phases

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/vipd-project/vipd/pkg/topology"
)

// Facts is what the facts phase learns about a host.
type Facts struct {
	OS        string // ID from /etc/os-release: ubuntu, debian
	Version   string // VERSION_ID: 24.04
	Pretty    string // PRETTY_NAME
	Arch      string // Go name: amd64, arm64
	CPUs      int
	MemBytes  int64
	Hostname  string
	Interface string // the interface holding the host's address
	SwapBytes int64  // swap in use or configured (0: off)
	// Container is the container technology the host runs in (systemd-detect-virt -c:
	// "systemd-nspawn", "docker"...), "" on a machine or VM.
	Container string
}

func (f *Facts) summary() string {
	swap := "swap off"
	if f.SwapBytes > 0 {
		swap = fmt.Sprintf("swap %.1f GiB", float64(f.SwapBytes)/(1<<30))
	}
	s := fmt.Sprintf("%s, %s, %d CPUs, %.1f GiB RAM, %s holds the address, %s", f.Pretty, f.Arch, f.CPUs, float64(f.MemBytes)/(1<<30), f.Interface, swap)
	if f.Container != "" {
		s += ", in a container (" + f.Container + ")"
	}
	return s
}

const factsScript = `. /etc/os-release 2>/dev/null
echo "os=$ID"
echo "version=$VERSION_ID"
echo "pretty=$PRETTY_NAME"
echo "arch=$(uname -m)"
echo "cpus=$(nproc)"
echo "mem_kb=$(awk '/^MemTotal:/{print $2}' /proc/meminfo)"
echo "hostname=$(hostname)"
echo "iface=$(ip -o -4 addr show | awk -v a=%s '{split($4, p, "/"); if (p[1] == a) {print $2; exit}}')"
echo "swap_kb=$(awk 'NR > 1 {s += $3} END {print s + 0}' /proc/swaps)"
echo "virt=$(systemd-detect-virt -c 2>/dev/null)"`

// Facts gathers (once) and returns the facts of a host.
func (r *Runner) Facts(ctx context.Context, h topology.Host) (*Facts, error) {
	r.mu.Lock()
	f := r.facts[h.Name]
	r.mu.Unlock()
	if f != nil {
		return f, nil
	}
	out, ok, err := r.probe(ctx, h, "facts", fmt.Sprintf(factsScript, h.Address))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("gather facts: the facts script failed")
	}
	f = parseFacts(out)
	r.mu.Lock()
	r.facts[h.Name] = f
	r.mu.Unlock()
	return f, nil
}

func parseFacts(out string) *Facts {
	f := &Facts{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch k {
		case "os":
			f.OS = v
		case "version":
			f.Version = v
		case "pretty":
			f.Pretty = v
		case "arch":
			f.Arch = goArch(v)
		case "cpus":
			f.CPUs, _ = strconv.Atoi(v)
		case "mem_kb":
			n, _ := strconv.ParseInt(v, 10, 64)
			f.MemBytes = n * 1024
		case "hostname":
			f.Hostname = v
		case "iface":
			f.Interface = v
		case "virt":
			if v != "none" {
				f.Container = v
			}
		case "swap_kb":
			n, _ := strconv.ParseInt(v, 10, 64)
			f.SwapBytes = n * 1024
		}
	}
	if f.Pretty == "" {
		f.Pretty = strings.TrimSpace(f.OS + " " + f.Version)
	}
	return f
}

func goArch(uname string) string {
	switch uname {
	case "x86_64":
		return "amd64"
	case "aarch64", "arm64":
		return "arm64"
	case "armv7l":
		return "arm"
	case "ppc64le":
		return "ppc64le"
	case "s390x":
		return "s390x"
	}
	return uname
}

type factsPhase struct{}

func (factsPhase) Name() string                    { return PhaseFacts }
func (factsPhase) Title() string                   { return "Gather facts" }
func (factsPhase) Parallel() bool                  { return true }
func (factsPhase) Hosts(r *Runner) []topology.Host { return r.t.Hosts }

// Probe gathers the facts (read-only, so the phase is always "done") and warns about what
// the reference's prerequisites say (Ubuntu 24.04, 2 CPUs, 2 GB RAM).
func (factsPhase) Probe(ctx context.Context, r *Runner, h topology.Host) (Status, error) {
	f, err := r.Facts(ctx, h)
	if err != nil {
		return Status{}, err
	}
	if f.Interface == "" {
		return Status{}, fmt.Errorf("no interface holds the host's address %s: the topology's address must be the host's own address on the cluster network", h.Address)
	}
	if f.OS != "ubuntu" || f.Version != "24.04" {
		r.warn(h.Name, PhaseFacts, fmt.Sprintf("%s: bootstrap is tested on Ubuntu 24.04", f.Pretty))
	}
	if h.Role != topology.RoleLB {
		if f.CPUs < 2 {
			r.warn(h.Name, PhaseFacts, fmt.Sprintf("%d CPU: Kubernetes nodes need at least 2 (kubeadm preflight refuses fewer on masters)", f.CPUs))
		}
		if f.MemBytes < 1900<<20 {
			r.warn(h.Name, PhaseFacts, fmt.Sprintf("%.1f GiB RAM: Kubernetes nodes need at least 2 GB", float64(f.MemBytes)/(1<<30)))
		}
	}
	return Status{Done: true, Detail: f.summary()}, nil
}

func (factsPhase) Run(context.Context, *Runner, topology.Host, Status) (string, error) {
	return "", nil
}
