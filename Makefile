# wib — the two commands: `make run` and `make test`. Everything here installs
# what it needs from the package registries; build outputs live under
# $(WIB_CACHE), outside the clone, so repeated runs are fast.

SHELL := /bin/bash
WIB_CACHE ?= $(HOME)/.cache/wib
export WIB_CACHE
export CARGO_TARGET_DIR ?= $(WIB_CACHE)/target
CARGO ?= cargo
# Integration and e2e tests each start a control plane; two at a time fit 2 cores.
TEST_THREADS ?= 2

.PHONY: help run test generate fmt lint unit e2e controlplane moto helm kstatus build bench release-build e2e-attached e2e-kind image tools check-generated clean

help:
	@echo "make run       local control plane + operator + samples, Ctrl-C to stop"
	@echo "make test      fmt, clippy, unit, integration and e2e tests (what CI runs)"
	@echo "make generate  regenerate CRD YAML from the Rust types and config/ from the chart"
	@echo "make e2e-kind  (needs Docker and kind) the chart and the fakes in a kind cluster, e2e scenarios against it"

## Tooling ----------------------------------------------------------------

tools:
	@command -v go >/dev/null || { echo "Go is required (https://go.dev/dl or apt-get install golang)"; exit 1; }
	@command -v cargo >/dev/null || { echo "Rust is required (rustup)"; exit 1; }
	@rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy

## etcd, kube-apiserver, kube-controller-manager and kubectl from the pinned Go modules.
controlplane: tools
	@bash e2e/controlplane/build.sh >/dev/null

## moto[server] (the AWS fake) at the pinned version, in a virtualenv in the cache.
moto:
	@command -v python3 >/dev/null || { echo "Python 3 is required (apt-get install python3 python3-venv)"; exit 1; }
	@bash e2e/moto/install.sh >/dev/null

## helm from the pinned Go module (e2e/helm), for lint/template in the tests.
helm: tools
	@bash e2e/helm/build.sh >/dev/null

## The kstatus checker (Flux's status library) for the GitOps health tests.
kstatus: tools
	@bash e2e/kstatus/build.sh >/dev/null

build: tools
	$(CARGO) build --workspace --bins

## Generated files ----------------------------------------------------------

generate: helm
	$(CARGO) run -q -p wib-api --bin crdgen -- config/crd charts/wib/crds
	bash e2e/helm/render-config.sh config

## The two commands ---------------------------------------------------------

run: controlplane moto build
	$(CARGO_TARGET_DIR)/debug/wib-localenv \
	  --operator $(CARGO_TARGET_DIR)/debug/wib-controller \
	  --samples config/samples

# Unit, integration and e2e tests (all targets; the crates have no doc tests),
# then one closing line that counts every test binary's results.
test: fmt lint controlplane moto helm kstatus build release-build
	@mkdir -p $(WIB_CACHE)
	set -o pipefail; $(CARGO) test --workspace --all-targets --no-fail-fast -- --test-threads=$(TEST_THREADS) 2>&1 | tee $(WIB_CACHE)/test.log
	set -o pipefail; bash e2e/local-attached.sh 2>&1 | tee -a $(WIB_CACHE)/test.log
	@awk '/^test result:/ {p += $$4; f += $$6} END {printf "tests: %d passed, %d failed\n", p, f; exit (f > 0 || p == 0)}' $(WIB_CACHE)/test.log

fmt:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Many bindings against the fakes; the table goes to BENCHMARKS.md by hand.
bench: controlplane moto build
	$(CARGO_TARGET_DIR)/debug/wib-bench $(BENCH_BINDINGS_PER_CLOUD)

## The image's build stage outside Docker: the Dockerfile's command and
## target (static musl), or the host target where musl cannot be installed.
release-build: tools
	CARGO=$(CARGO) bash e2e/image/build-stage.sh

image:
	docker build -t ghcr.io/wib-dev/wib-controller:dev .
	docker build --target fakes -t ghcr.io/wib-dev/wib-fakes:dev .

## The scenarios of e2e/in-cluster.txt against wib-localenv's processes,
## attached the way `make e2e-kind` attaches to its cluster.
e2e-attached: controlplane moto build
	bash e2e/local-attached.sh

## Needs Docker and kind: images built, the fakes and the chart in a kind
## cluster, and the scenarios of e2e/in-cluster.txt run against it.
e2e-kind: helm
	bash e2e/kind/run.sh

clean:
	rm -rf $(CARGO_TARGET_DIR)
