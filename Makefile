# wib — the two commands: `make run` and `make test`. Everything here installs
# what it needs from the package registries; build outputs live under
# $(WIB_CACHE), outside the clone, so repeated runs are fast.

SHELL := /bin/bash
WIB_CACHE ?= $(HOME)/.cache/wib
export WIB_CACHE
export CARGO_TARGET_DIR ?= $(WIB_CACHE)/target
CARGO ?= cargo
# Integration and e2e tests each start a control plane and mostly wait on it:
# three at a time keep 2 cores busy (two left them idle half the time).
TEST_THREADS ?= 3

# One compilation for clippy, the binaries and the tests. `cargo clippy` is
# `cargo check` with clippy-driver wrapping the workspace's own crates, so it
# compiles the whole dependency graph a second time in check mode. Here every
# cargo command wraps the workspace crates in clippy-driver instead (the way
# `cargo clippy` passes it: RUSTC_WORKSPACE_WRAPPER, arguments in
# CLIPPY_ARGS), so linting happens inside the one real build, dependencies
# are compiled once, and build, test, run and bench share every artifact.
# The wrapper and its arguments are part of cargo's fingerprint: any cargo
# command meant to reuse this build needs the same two variables (the
# scripts under e2e/ inherit them from make).
CLIPPY_DRIVER ?= $(shell command -v clippy-driver)
export RUSTC_WORKSPACE_WRAPPER := $(CLIPPY_DRIVER)
export CLIPPY_ARGS := -Dwarnings
CARGO_ALL := --workspace --all-targets

.PHONY: help run test generate fmt lint tests controlplane moto sdks helm kstatus build bench bench-smoke release-build release-check e2e-attached e2e-kind image tools clean

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

## The official Python SDKs (azure-identity, google-auth, boto3) a user's pod
## runs, for the official_sdks e2e test (a virtualenv in ~/.cache/wib).
sdks:
	@command -v python3 >/dev/null || { echo "Python 3 is required (apt-get install python3 python3-venv)"; exit 1; }
	@bash e2e/sdk/install.sh >/dev/null

## helm from the pinned Go module (e2e/helm), for lint/template in the tests.
helm: tools
	@bash e2e/helm/build.sh >/dev/null

## The kstatus checker (Flux's status library) for the GitOps health tests.
kstatus: tools
	@bash e2e/kstatus/build.sh >/dev/null

## The binaries `make run` and the tests start (a subset of `make lint`'s build).
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

# Every phase in order, timed, then the phase table and the closing
# `tests: N passed, N failed` line (e2e/test-suite.sh).
test: tools
	@bash e2e/test-suite.sh

fmt:
	$(CARGO) fmt --all -- --check

## clippy -D warnings over every target, in the same compilation that builds
## the binaries and the test executables `make tests` runs.
lint: tools
	@test -n "$(CLIPPY_DRIVER)" || { echo "clippy-driver not found: rustup component add clippy"; exit 1; }
	$(CARGO) build $(CARGO_ALL)

## Unit, integration and e2e tests (the crates have no doc tests); after
## `make lint` this compiles nothing.
tests: lint controlplane moto helm kstatus
	$(CARGO) test $(CARGO_ALL) --no-fail-fast -- --test-threads=$(TEST_THREADS)

## Scale (issue figures), release build, one fresh environment per cloud
## and size, each invocation writing its own section of BENCHMARKS.md:
## 1,000 bindings per cloud with the Azure and GCP fakes enforcing the
## clouds' documented rate limits, then 10,000 per cloud at zero latency
## with wib's client-side rate raised (at the documented limits 10,000
## Azure identities alone take 5,000 s). `--clouds aws --bindings 200
## --resync 120 --windows 3` is the peer table's AWS workload.
BENCH_LIMITS_ARGS ?= --clouds aws,gcp,azure --bindings 1000 --resync 120 --windows 1 --quotas documented
BENCH_SCALE_ARGS ?= --clouds gcp,azure,aws --bindings 10000 --resync 120 --windows 1 --quotas none --calls-per-second 1000
bench: controlplane moto
	$(CARGO) build --release --workspace --bins
	$(CARGO_TARGET_DIR)/release/wib-bench $(BENCH_LIMITS_ARGS) --markdown BENCHMARKS.md --section "At the clouds' documented limits"
	$(CARGO_TARGET_DIR)/release/wib-bench $(BENCH_SCALE_ARGS) --markdown BENCHMARKS.md --section "10,000 bindings, fakes at zero latency"
	$(CARGO_TARGET_DIR)/release/wib-bench-webhook --pods 1000 --markdown BENCHMARKS-webhook.md

## What make test runs of the benchmark: 100 AWS bindings on moto with the
## debug build and a short resync, and 100 pod creates through the webhook,
## so `make bench` cannot rot unnoticed.
bench-smoke: controlplane moto lint
	$(CARGO_TARGET_DIR)/debug/wib-bench --clouds aws --bindings 100 --resync 20 --windows 1
	$(CARGO_TARGET_DIR)/debug/wib-bench-webhook --pods 100

## The image's build stage outside Docker: the Dockerfile's command and
## target (static musl), or the host target where musl cannot be installed.
release-build: tools
	CARGO=$(CARGO) bash e2e/image/build-stage.sh

## What `make test` runs: the build stage only when its inputs differ from the
## ones recorded in e2e/image/verified-inputs (see e2e/image/release-check.sh).
release-check: tools
	CARGO=$(CARGO) bash e2e/image/release-check.sh

image:
	docker build -t ghcr.io/wib-dev/wib-controller:dev .
	docker build --target fakes -t ghcr.io/wib-dev/wib-fakes:dev .

## The scenarios of e2e/in-cluster.txt against wib-localenv's processes,
## attached the way `make e2e-kind` attaches to its cluster.
e2e-attached: controlplane moto lint
	bash e2e/local-attached.sh

## Needs Docker and kind: images built, the fakes and the chart in a kind
## cluster, and the scenarios of e2e/in-cluster.txt run against it.
e2e-kind: helm
	bash e2e/kind/run.sh

clean:
	rm -rf $(CARGO_TARGET_DIR)
