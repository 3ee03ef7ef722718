# vipd / bootstrap. `make test` runs every test (the e2e tests need root: they build network
# namespaces and boot systemd hosts); `make demo` runs the main job on a local lab.
GO        ?= go
BIN       := bin
# hack/deps.sh puts Go in /usr/local/go and staticcheck in ~/go/bin: found on a fresh shell too.
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
# Version from git tags (hack/version.sh says how); both binaries print it with --version.
VERSION   ?= $(shell hack/version.sh)
COMMIT    ?= $(shell hack/version.sh commit)
LDFLAGS   := -s -w -X github.com/vipd-project/vipd/pkg/cli.version=$(VERSION) -X github.com/vipd-project/vipd/pkg/cli.commit=$(COMMIT)
E2E_PKGS  := ./test/e2e/...
# (= not :=: listed when used, after deps made sure Go is there)
UNIT_PKGS  = $(shell $(GO) list ./... | grep -v /test/e2e)
FUZZTIME  ?= 11s
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(HOME)/go/bin/staticcheck)

.PHONY: all deps build package test unit e2e fuzz lint k8s-lab test-k8s demo demo-standin demo-vrrp demo-cluster demo-k8s bench bench-failover bench-proxy bench-cluster bench-faults bench-day2 bench-bootstrap bench-k8s-kill clean

all: build

# What the tests, the demo and the benchmarks need (root): Go as go.mod names it, Debian
# packages, Go modules, staticcheck. A prerequisite of build, test and demo, so that each works
# as the first command on a fresh Debian 12 host; a no-op (under a second) once all is there.
deps:
	@bash hack/deps.sh

build: deps
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/vipd ./cmd/vipd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/bootstrap ./cmd/bootstrap

# Debian packages: bin/vipd_$(VERSION)_{amd64,arm64}.deb and vipd-bootstrap_..., built with
# nfpm as a Go library (hack/package), then checked with lintian (errors fail the build).
PKG_ARCHES ?= amd64,arm64
package: deps
	$(GO) run ./hack/package -version '$(VERSION)' -commit '$(COMMIT)' -arch $(PKG_ARCHES) -out $(BIN)
	lintian --fail-on error $(BIN)/*_$(subst ~,?,$(subst +,?,$(VERSION)))_*.deb

# Every test: vet, unit tests (race detector on), the fuzz targets for a bounded time, and the
# end-to-end tests in network namespaces and systemd-nspawn hosts (root; skipped otherwise).
test: deps lint unit fuzz e2e

unit: deps
	$(GO) test -race -count=1 -timeout 10m $(UNIT_PKGS)

SHELL := /bin/bash

e2e: build
	VIPD_BIN=$(abspath $(BIN)/vipd) BOOTSTRAP_BIN=$(abspath $(BIN)/bootstrap) $(GO) test -p 1 -count=1 -timeout 50m -v $(E2E_PKGS) 2>&1 | tee $(BIN)/e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+_test.go)' ; exit $${PIPESTATUS[0]}

# Each fuzz target runs FUZZTIME (11 s: the targets together stay under ~45 s): the VRRP packet decoder, the
# vipd config loader, the topology loader and the gossip message decoder. Findings land in the package's testdata/fuzz.
FUZZ_TARGETS := ./pkg/vrrp:FuzzParse ./pkg/config:FuzzParse ./pkg/topology:FuzzParse ./pkg/cluster:FuzzGossipDecode
fuzz: deps
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t%%:*} $${t##*:} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t##*:}\$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# The real-Kubernetes lab (root): kubeadm, kubelet, kubectl, the control plane, etcd, CoreDNS,
# pause, the CNI plugins and crictl built from the Go module proxy (niced, ~30 min on 2 busy cores
# the first time, nothing once cached under /var/cache/vipd-lab/k8s), as pkgs.k8s.io-like
# .debs and docker-archive images. test-k8s then runs TestRealKubernetes: `bootstrap up` of a
# real 2 LB + 3 master + 1 worker cluster behind vipd (not part of `make test`).
k8s-lab:
	$(GO) run ./test/nspawn/cmd/k8s-build

test-k8s: k8s-lab
	mkdir -p $(BIN) && $(GO) test -count=1 -timeout 40m -v -run '^TestRealKubernetes$$' ./test/e2e/ 2>&1 | tee $(BIN)/e2e-k8s.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+_test.go)' ; exit $${PIPESTATUS[0]}

# The main job on a local lab (root; cleans up after itself, also on Ctrl-C):
#  1. demo-vrrp: network namespaces lb1, lb2, three masters running a TLS kube-apiserver
#     stand-in, a client sending new TLS requests through VIP:6443: vipd elects the VIP and
#     proxies; a master is killed, then the master LB crashes; the VIP moves; failed requests
#     and gaps are measured (-hold keeps the lab up to look at the stats pages).
#  2. demo-cluster: six Debian hosts booted with systemd-nspawn (2 LB, 3 masters, 1 worker,
#     stand-in Kubernetes packages); `bootstrap up` installs vipd and builds the cluster,
#     `bootstrap status` shows it, `bootstrap drill` runs the reference's HA tests.
# make demo: the cluster part on real Kubernetes when its build is cached (make k8s-lab,
# ~30 min once), else on the stand-ins (said so; make demo-standin is the quick look anyway).
K8S_CACHE ?= /var/cache/vipd-lab/k8s/1.33.6
demo: deps demo-vrrp
	@if ls $(K8S_CACHE)/artifacts-*.ok >/dev/null 2>&1; then \
		echo "demo: the real-Kubernetes build is cached ($(K8S_CACHE)): the cluster runs real kubeadm, kubelet, etcd and apiservers"; \
		$(MAKE) --no-print-directory demo-k8s; \
	else \
		echo "demo: no real-Kubernetes build cached ($(K8S_CACHE); make k8s-lab builds it, ~30 min once): the cluster runs on stand-in Kubernetes packages"; \
		$(MAKE) --no-print-directory demo-cluster; \
	fi

demo-standin: deps demo-vrrp demo-cluster

demo-vrrp: build
	$(GO) run ./test/demo -vipd $(BIN)/vipd

demo-cluster: build
	$(GO) run ./test/nspawn/cmd/vipd-lab -- sh -c '$(abspath $(BIN))/bootstrap up -f "$$TOPOLOGY" --accept-new-host-keys && $(abspath $(BIN))/bootstrap status -f "$$TOPOLOGY" && $(abspath $(BIN))/bootstrap drill -f "$$TOPOLOGY"'

# The real-Kubernetes variant of demo-cluster (root): the same six hosts running the real
# kubeadm, kubelet, etcd and apiservers of `make k8s-lab` (built first when not cached: ~30
# min once); `bootstrap up` (~3-4 min on 2 busy cores), status, drill, then the real kubectl
# through the VIP.
demo-k8s: build
	$(GO) run ./test/nspawn/cmd/vipd-lab -k8s -- sh -c '$(abspath $(BIN))/bootstrap up -f "$$TOPOLOGY" --accept-new-host-keys && $(abspath $(BIN))/bootstrap status -f "$$TOPOLOGY" && $(abspath $(BIN))/bootstrap drill -f "$$TOPOLOGY" && $(abspath $(BIN))/bootstrap kubeconfig -f "$$TOPOLOGY" -o "$$LAB_DIR/admin.conf" && kubectl --kubeconfig "$$LAB_DIR/admin.conf" get nodes -o wide && kubectl --kubeconfig "$$LAB_DIR/admin.conf" get pods -A -o wide'

# Benchmarks print ratios against Keepalived / HAProxy measured in the same run (root).
bench: bench-failover bench-proxy bench-cluster bench-faults bench-day2 bench-bootstrap

bench-failover: build
	$(GO) run ./bench/failover -vipd $(BIN)/vipd

bench-proxy: build
	$(GO) run ./bench/proxy -vipd $(BIN)/vipd

bench-cluster: build
	$(GO) run ./bench/cluster -vipd $(BIN)/vipd

# The LB fault matrix: vipd gossip off vs on vs Keepalived + HAProxy (issue 8).
bench-faults: build
	$(GO) run ./bench/faults -vipd $(BIN)/vipd

# Day-2 operations (drain, maintenance, SIGTERM handover): vipd vs Keepalived + HAProxy (issue 12).
bench-day2: build
	$(GO) run ./bench/day2 -vipd $(BIN)/vipd

bench-bootstrap: build
	$(GO) run ./bench/bootstrap -bootstrap $(BIN)/bootstrap -vipd $(BIN)/vipd

# `bootstrap up` killed at 20 random points on the REAL cluster (needs `make k8s-lab`'s cache;
# about 1-2 hours on 2 busy cores), one rerun each: how many converge (bench/killrerun).
bench-k8s-kill: build
	$(GO) run ./bench/killrerun -bootstrap $(BIN)/bootstrap

clean:
	rm -rf $(BIN)
