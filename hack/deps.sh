#!/usr/bin/env bash
# Installs what the tests, the demo and the benchmarks need on a Debian 12 machine:
# Debian packages (real Keepalived, HAProxy, OpenSSH, systemd-nspawn, Chromium, nftables,
# stress-ng for the suite-under-load runs...)
# and the Go modules. Run as root: sudo make deps
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"
cd "$(dirname "$0")/.."

pkgs=(make git iproute2 iputils-ping nftables tcpdump keepalived haproxy iperf3 wrk
      chromium openssh-server openssh-client sudo debootstrap systemd-container
      apt-utils dpkg-dev gnupg zstd curl ca-certificates procps prometheus time openssl passwd util-linux kmod
      lintian stress-ng)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts these daemons on install; the tests run their own copies inside namespaces.
for s in keepalived haproxy ssh prometheus prometheus-node-exporter; do
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now "$s" >/dev/null 2>&1 || true
  fi
done

go mod download
command -v staticcheck >/dev/null || go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
# The real-Kubernetes lab (make test-k8s; not part of make test) only on request: it builds
# Kubernetes from the Go module proxy, about 30 minutes on 2 busy cores the first time.
if [ -n "${VIPD_K8S:-}" ] && [ "${VIPD_K8S}" != 0 ]; then
  go run ./test/nspawn/cmd/k8s-build
fi
echo "deps: ok ($(go version | cut -d' ' -f3))"
