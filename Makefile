# vipd / bootstrap. `make test` runs every test (the e2e tests need root: they build network
# namespaces and boot systemd hosts); `make demo` runs the main job on a local lab.
GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
E2E_PKGS  := ./test/e2e/...
UNIT_PKGS := $(shell $(GO) list ./... | grep -v /test/e2e)
FUZZTIME  ?= 15s
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(HOME)/go/bin/staticcheck)

# Installs Debian packages and Go modules the tests need (root).
.PHONY: all deps build test unit e2e fuzz lint demo bench bench-failover bench-proxy bench-bootstrap clean

all: build

deps:
	bash hack/deps.sh

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/vipd ./cmd/vipd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/bootstrap ./cmd/bootstrap

# Every test: vet, unit tests (race detector on), the fuzz targets for a bounded time, and the
# end-to-end tests in network namespaces and systemd-nspawn hosts (root; skipped otherwise).
test: lint unit fuzz e2e

unit:
	$(GO) test -race -count=1 -timeout 10m $(UNIT_PKGS)

SHELL := /bin/bash

e2e: build
	$(GO) test -p 1 -count=1 -timeout 25m -v $(E2E_PKGS) 2>&1 | tee $(BIN)/e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+_test.go)' ; exit $${PIPESTATUS[0]}

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./pkg/vrrp

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Builds vipd, creates a lab of network namespaces (two LB hosts, a client), runs vipd on
# both, kills the master and shows the VIP move. Needs root. Cleans up after itself.
demo: build
	$(GO) run ./test/demo -vipd $(BIN)/vipd

bench: bench-failover

bench-failover: build
	$(GO) run ./bench/failover -vipd $(BIN)/vipd

clean:
	rm -rf $(BIN)
