# ML Lab Kit. The two commands on the README's first screen:
#   make site   provision the hosts in $(INVENTORY) (default: this machine)
#   make test   every test tier these machines can run (lint, unit, render, molecule, labs)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

INVENTORY ?= inventory/localhost.yml
VENV      ?= .venv
PYTHON    := $(shell scripts/find-python.sh)
BIN       := $(VENV)/bin
ANSIBLE_ARGS ?=
# Distributions the molecule scenarios run on (local images, see tests/molecule/): all of
# them for the roles in MOLECULE_ALL_DISTROS_ROLES (base: its packages and services differ
# between Debian releases), the first for the other roles and for fake-* scenarios (roles'
# logic against labelled CLI stand-ins), whose tasks do not depend on the release.
# MOLECULE_JOBS runs run side by side (tests/molecule/run-all.sh).
MOLECULE_DISTROS ?= bookworm trixie
MOLECULE_ALL_DISTROS_ROLES ?= base
MOLECULE_JOBS ?= 2
# scripts/timed: how long each tier took (and, for .ci/run, a line in $$MLLAB_STAGES).
TIMED := scripts/timed
# Every roles/<role>/molecule/<scenario>, except *-real ones (they need real hosts:
# snap store, GPUs; run them with `make molecule-real`).
MOLECULE_SCENARIOS := $(sort $(filter-out %-real/molecule.yml,$(wildcard roles/*/molecule/*/molecule.yml)))
PYTEST := $(BIN)/python -m pytest

.PHONY: help venv test-lint test-python test-molecule site verify platform-render reset test lint unit molecule molecule-images molecule-real labs-test lab-image e2e e2e-build e2e-up e2e-down bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

# --- environments -------------------------------------------------------------------
$(BIN)/activate:
	@test -n "$(PYTHON)" || exit 1
	$(PYTHON) -m venv $(VENV)
	scripts/pip-install $(BIN)/pip --upgrade pip

$(VENV)/.controller: requirements/controller.txt | $(BIN)/activate
	scripts/pip-install $(BIN)/pip -r requirements/controller.txt
	@touch $@

$(VENV)/.collections: requirements.yml $(VENV)/.controller
	$(BIN)/python scripts/ensure_collections.py $(BIN)/ansible-galaxy requirements.yml
	@touch $@

$(VENV)/.dev: requirements/dev.txt requirements/controller.txt | $(BIN)/activate
	scripts/pip-install $(BIN)/pip -r requirements/dev.txt
	@touch $@

venv: $(VENV)/.dev $(VENV)/.collections $(VENV)/.labs ## the venv with everything the tests need

# --- the main job -------------------------------------------------------------------
site: $(VENV)/.collections ## provision: ansible-playbook site.yml on $(INVENTORY)
	$(BIN)/ansible-playbook -i $(INVENTORY) site.yml $(ANSIBLE_ARGS)

verify: $(VENV)/.dev ## testinfra, layer by layer, against the hosts of $(INVENTORY)
	$(PYTEST) tests/infra -p no:cacheprovider --hosts='ansible://all' \
	  --ansible-inventory=$(INVENTORY) --force-ansible -rs

platform-render: $(VENV)/.collections ## render the platform layer to artifacts/render (no cluster contacted)
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/platform.yml -e platform_common_render_dir=$(CURDIR)/artifacts/render

RESET ?= cluster
reset: $(VENV)/.collections ## tear down: RESET=cluster (nodes leave), platform (releases, namespaces: asks before volumes) or all
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/reset.yml -e mllab_reset_scope=$(RESET) $(ANSIBLE_ARGS)

# --- tests ----------------------------------------------------------------------------
# Three chains side by side: lint; unit then the package's tests; molecule (mostly waiting on
# `docker exec`) then the labs' exercise cases. labs-test is split in two halves of similar length
# (LABS_CORE, LABS_EXERCISES) so the two long chains end together; each tier's output is printed
# whole when it ends. Every pytest run writes a JUnit XML into MLLAB_JUNIT_DIR (a temporary folder
# outside the checkout); scripts/skip-report prints their skips at the end, counted by reason and
# tier, also when a lane failed (a green run with skips says so last, not only in a tier's output).
test: ## every tier these machines can run: lint beside unit + labs-test beside molecule (each timed), then the skips
	@snap=$$(mktemp); junit=$$(mktemp -d /tmp/mllab-junit.XXXXXX); scripts/clean-check snapshot $$snap; \
	rc=0; MLLAB_JUNIT_DIR=$$junit $(MAKE) --no-print-directory -j3 --output-sync=recurse \
	  test-lint test-python test-molecule || rc=$$?; \
	scripts/skip-report $$junit || true; \
	if [[ $$rc == 0 ]]; then scripts/clean-check compare $$snap || rc=$$?; fi; \
	rm -rf $$snap $$junit; exit $$rc

test-lint: $(VENV)/.dev $(VENV)/.collections
	@$(TIMED) lint $(MAKE) --no-print-directory lint

test-python: $(VENV)/.dev $(VENV)/.labs
	@$(TIMED) unit $(MAKE) --no-print-directory unit
	@$(TIMED) "labs-test (package)" $(MAKE) --no-print-directory labs-test LABS_TESTS="$(LABS_CORE)" LABS_PART=package

test-molecule: $(VENV)/.dev $(VENV)/.collections $(VENV)/.labs
	@$(TIMED) molecule $(MAKE) --no-print-directory molecule
	@$(TIMED) "labs-test (exercises)" $(MAKE) --no-print-directory labs-test LABS_TESTS="$(LABS_EXERCISES)" LABS_PART=exercises

# Lint's ansible runs keep facts in memory: ansible.cfg's .cache/facts would be a run output
# in the checkout (scripts/clean-check).
lint: export ANSIBLE_CACHE_PLUGIN = memory
lint: $(VENV)/.dev $(VENV)/.collections ## yamllint, ansible-lint (production), ruff, syntax-check
	$(BIN)/yamllint --strict .
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/ansible-playbook --syntax-check site.yml playbooks/reset.yml playbooks/upgrade.yml
	$(BIN)/ansible-lint --profile production --offline

# The platform tests start real MLflow and KServe servers, so they need the labs extras too.
# JUNIT (under `make test`, MLLAB_JUNIT_DIR set): a pytest run's JUnit XML for scripts/skip-report.
JUNIT = $${MLLAB_JUNIT_DIR:+--junitxml=$$MLLAB_JUNIT_DIR/$(1).xml}
unit: $(VENV)/.dev $(VENV)/.labs ## unit tests (parsers, filters, rendering, schemas, alert rules)
	$(PYTEST) tests/unit -q -ra --durations=25 $(call JUNIT,unit)

molecule-images: ## build the local Debian systemd images molecule uses (both at once)
	@if [ -n "$${MOLECULE_IMAGE:-}" ]; then echo "using MOLECULE_IMAGE=$$MOLECULE_IMAGE"; else \
	  pids=(); for d in $(MOLECULE_DISTROS); do tests/molecule/build-image.sh $$d & pids+=($$!); done; \
	  for p in "$${pids[@]}"; do wait $$p; done; fi

molecule: $(VENV)/.dev $(VENV)/.collections molecule-images ## every role's molecule scenarios (MOLECULE_JOBS at a time)
	MOLECULE_DISTROS="$(MOLECULE_DISTROS)" MOLECULE_ALL_DISTROS_ROLES="$(MOLECULE_ALL_DISTROS_ROLES)" \
	  MOLECULE_JOBS=$(MOLECULE_JOBS) VENV_BIN=$(CURDIR)/$(BIN) tests/molecule/run-all.sh $(MOLECULE_SCENARIOS)

# DRY_RUN=1: the scenario's steps with nothing installed and nothing checked (no snap store
# needed; the cluster tests skip). Without it, a host that cannot reach the store fails.
DRY_RUN ?=
molecule-real: $(VENV)/.dev $(VENV)/.collections ## real MicroK8s on THIS host (snap store and sudo; fails without the store; DRY_RUN=1: install nothing)
	cd roles/microk8s && PATH="$(CURDIR)/$(BIN):$$PATH" \
	  $(if $(filter 1,$(DRY_RUN)),MLLAB_MICROK8S_REAL_DRY_RUN=1 MLLAB_EXPECT_LAYERS=) molecule test -s microk8s-real

# pyproject.toml's ranges, at requirements/constraints.txt's exact pins (the tested versions).
$(VENV)/.labs: python/pyproject.toml requirements/constraints.txt | $(BIN)/activate
	scripts/pip-install $(BIN)/pip -c requirements/constraints.txt -e 'python[labs,k8s,test]'
	@touch $@

# The exercises' three cases per lab (test_exercise_labNN.py), and everything else in python/tests.
LABS_EXERCISES := $(sort $(wildcard python/tests/test_exercise_lab*.py))
LABS_CORE := $(filter-out $(LABS_EXERCISES),$(sort $(wildcard python/tests/test_*.py)))
LABS_TESTS ?= python/tests
LABS_PART ?= all
labs-test: $(VENV)/.labs ## the mllab package: every lab's exercise cases on the local backend (CPU), unit tests
	MLLAB_HOME=$$(mktemp -d) $(BIN)/python -m pytest $(LABS_TESTS) -q -ra --timeout=300 --durations=15 -p no:cacheprovider \
	  $(call JUNIT,labs-test-$(LABS_PART))

# --- e2e tier: upstream Kubernetes built offline, run as local processes (root) -------
# Build outputs and images are cached in $(E2E_CACHE) (default ~/.cache/mllab-e2e, outside the clone: shared by every checkout); tests/e2e/README.md.
e2e-build: ## build the e2e tier's Kubernetes, tools and images (cached; a warm build is a no-op)
	tests/e2e/cluster build

e2e-up: ## start the e2e cluster (upstream Kubernetes as local processes)
	tests/e2e/cluster up

e2e-down: ## stop it; leaves no process, mount or iptables rule behind
	tests/e2e/cluster down

e2e: $(VENV)/.dev $(VENV)/.collections $(VENV)/.labs ## e2e tier: cluster up, go/no-go, platform + test_platform, labs on the k8s backend, down
	VENV=$(VENV) tests/e2e/run all

# The lab runner image (mllab_image) alone, after a change to python/: the lab_image role builds
# it on the controller (uv + crane) and pushes it to the cluster's registry (`make site` does too).
lab-image: $(VENV)/.collections ## build the lab runner image (uv + crane, no Docker) and push it to the cluster's registry
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/lab-image.yml $(ANSIBLE_ARGS)

# --- benchmarks (not tests: nothing here fails for being slow) ---------------------------
BENCH_PEERS := .cache/bench/mlserver-venv
$(BENCH_PEERS)/.installed: requirements/bench-peers.txt
	$(PYTHON) -m venv $(BENCH_PEERS)
	$(BENCH_PEERS)/bin/pip install -q -r requirements/bench-peers.txt
	@touch $@

bench: $(VENV)/.labs $(VENV)/.dev $(BENCH_PEERS)/.installed ## benchmarks vs named peers -> docs/benchmarks.md (BENCH=serving,training,...)
	@command -v wrk >/dev/null || { echo "wrk is missing: sudo apt-get install wrk" >&2; exit 1; }
	$(BIN)/python bench/run.py $(if $(BENCH),--only $(BENCH))

clean: ## remove the venv and caches (not artifacts/)
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
