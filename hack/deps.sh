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
# Go: the version go.mod names. Debian 12 ships Go 1.19, too old to build this and too old to
# switch toolchains itself; it can still fetch the Go distribution from the Go module proxy
# (golang.org/toolchain, the module `go` itself uses for GOTOOLCHAIN), which goes to /usr/local/go.
want_go=$(awk '$1 == "go" {print $2; exit}' go.mod)
have_go=$(go env GOVERSION 2>/dev/null || true)
have_go=${have_go#go}
if [ -z "$have_go" ] || [ "$(printf '%s\n%s\n' "$want_go" "$have_go" | sort -V | head -n1)" != "$want_go" ]; then
  echo "deps: Go ${have_go:-missing}, go.mod wants $want_go: fetching it from the Go module proxy"
  old_go=$(command -v go || true)
  if [ -z "$old_go" ] || [ "$old_go" = /usr/local/go/bin/go ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends golang-go ca-certificates >/dev/null
    old_go=/usr/lib/go/bin/go
  fi
  arch=$(dpkg --print-architecture)
  tc=golang.org/toolchain@v0.0.1-go$want_go.linux-$arch
  if ! json=$(cd /tmp && GOTOOLCHAIN=local GOFLAGS=-mod=mod "$old_go" mod download -json "$tc"); then
    echo "deps: fetching $tc from the Go module proxy failed:" >&2
    printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Error": "\(.*\)"$/  \1/p' >&2
    exit 1
  fi
  dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -x "$dir/bin/go" ] || [ -f "$dir/bin/go" ] || { echo "deps: $tc: no Go distribution in the module cache ($dir)" >&2; exit 1; }
  rm -rf /usr/local/go.new && cp -r "$dir" /usr/local/go.new && chmod -R u+w,a+rX /usr/local/go.new
  chmod a+x /usr/local/go.new/bin/* /usr/local/go.new/pkg/tool/*/*
  rm -rf /usr/local/go && mv /usr/local/go.new /usr/local/go
  hash -r
fi

# One dpkg-query for all: a machine that has everything is done in well under a second.
missing=()
# (dpkg-query exits 1 when one of them is unknown, as on a fresh machine: not a failure here)
installed=$({ dpkg-query -W -f='${Package} ${Status}\n' "${pkgs[@]}" 2>/dev/null || true; } | awk '$NF == "installed" {print $1}')
for p in "${pkgs[@]}"; do
  grep -qx "$p" <<<"$installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts these daemons on install; the tests run their own copies inside namespaces.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  for s in keepalived haproxy ssh prometheus prometheus-node-exporter; do
    if systemctl is-enabled --quiet "$s" 2>/dev/null || systemctl is-active --quiet "$s" 2>/dev/null; then
      systemctl disable --now "$s" >/dev/null 2>&1 || true
    fi
  done
fi

go mod download
# staticcheck, pinned (make lint): installed once into ~/go/bin.
[ -x "$HOME/go/bin/staticcheck" ] || command -v staticcheck >/dev/null || go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
# The real-Kubernetes lab (make test-k8s; not part of make test) only on request: it builds
# Kubernetes from the Go module proxy, about 30 minutes on 2 busy cores the first time.
if [ -n "${VIPD_K8S:-}" ] && [ "${VIPD_K8S}" != 0 ]; then
  go run ./test/nspawn/cmd/k8s-build
fi
echo "deps: ok ($(go version | cut -d' ' -f3))"
