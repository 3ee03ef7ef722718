// Package nspawn is the simulated-host lab for bootstrap's end-to-end tests
// (shared/DESIGN.md §5). It owns:
//
//   - the Debian 12 (bookworm) root filesystem, built once with debootstrap from the
//     mirror apt uses on this machine and cached under /var/cache/vipd-lab as a
//     tarball plus an extracted read-only tree (EnsureRootfs);
//   - booting hosts with systemd-nspawn (systemd as PID 1, real OpenSSH and sudo),
//     each in a network namespace of its own joined to a Linux bridge that lives in a
//     bridge namespace, with a per-host overlayfs over the shared tree (Start);
//   - an "operator" network namespace on the same bridge, from which bootstrap runs
//     (`ip netns exec <Lab.OperatorNS> bootstrap ...`);
//   - a lab apt repository signed with a throwaway GPG key and served over HTTP from
//     the operator namespace (the stand-in Kubernetes packages of test/standin and the
//     real Debian containerd/runc packages);
//   - SSH material: a client key, a known_hosts file with every host's key, and the
//     users root (key) and ops (password, sudo with password);
//   - a topology.yaml for bootstrap pointing at all of it (Lab.WriteTopology).
//
// Guest facts: the lab interface is named host0 in every guest and holds the host's
// address (no default route, except in real-Kubernetes mode where it leads to a dead end:
// nothing leaves the lab). /lib/modules does not exist in
// the guests (the kernel here has no module tree either), so `modprobe overlay` fails
// with "Module overlay not found in directory /lib/modules/..." although overlay and
// bridge are built into the running kernel; br_netfilter is not available, so
// /proc/sys/net/bridge does not exist. /proc/sys/net is writable (private network
// namespace), the rest of /proc/sys is read-only (sysctl --system reports "permission
// denied" for Debian's own kernel.* and fs.* keys and exits 1). The OS apt sources are
// empty: every package comes from the lab repository. The real Debian containerd 1.6
// installs and runs in the guests (its socket answers; no containers are started).
//
// Timings on the 2-core development machine: rootfs build 61 s (first run only; 74 MB
// tarball), 6 hosts booted to `running` in 1-4 s, Close under 1 s.
//
// StartCluster adds the stand-in packages (test/standin) and writes a topology.yaml for
// bootstrap; cmd/vipd-lab wraps it for `make demo`.
//
// Real-Kubernetes mode (Options.K8s, ClusterOptions.K8s): EnsureK8s builds kubeadm,
// kubelet, kubectl, the control plane, etcd, CoreDNS, pause, the CNI plugins and crictl from
// the Go module proxy once (cmd/k8s-build, `make k8s-lab`; cached under
// /var/cache/vipd-lab/k8s/<version>) as pkgs.k8s.io-like .debs and docker-archive images;
// the hosts then boot a root filesystem with KubernetesNodePackages and the lab-only
// workarounds of k8s_lab.go, so bootstrap builds a real cluster (test/e2e
// TestRealKubernetes, `make test-k8s`).
//
// Everything needs root; callers t.Skip otherwise. Lab.Close undoes everything
// (processes ended by PID, mounts, cgroups, namespaces) even after a partial Start.
package nspawn
