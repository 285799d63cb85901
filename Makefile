# mcdns: two commands do all the set-up on a fresh Debian machine.
#   make run   start mcdns on the demo cluster state (config/demo-state.yaml), port 5353
#   make test  install what the tests need (venv, pip, Debian tools), lint, type-check, test
VENV       ?= .venv
PYTHON     ?= python3
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# command:debian-package pairs the tests (and benchmarks) run for real
TEST_TOOLS := dig:bind9-dnsutils unbound:unbound knotd:knot dnsperf:dnsperf ps:procps dnsdist:dnsdist \
              prometheus:prometheus promtool:prometheus chromium:chromium
BENCH_TOOLS := dnsperf:dnsperf knotd:knot taskset:util-linux
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT        := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get
# Debian installs unbound, knotd and knotc in /usr/sbin, which a non-root user's PATH
# lacks; the tests find tools with shutil.which, so every recipe (tests, bench, soak,
# fuzz) runs with both sbin directories on PATH (appended when missing).
path_words := $(subst :, ,$(PATH))
export PATH := $(PATH)$(if $(filter /usr/sbin,$(path_words)),,:/usr/sbin)$(if $(filter /sbin,$(path_words)),,:/sbin)

.PHONY: run test lint typecheck unit tools bench-tools bench bench-resolver bench-kube soak fuzz image image-test lock clean
.PHONY: dashboard dashboard-check status-screenshot

# Debian's python3 makes venvs only with python3-venv (ensurepip): installed when missing.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "installing Debian packages: python3-venv"; \
	  $(APT) update -q && $(APT) install -y -q --no-install-recommends python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(STAMP)
	$(BIN)/mcdns serve --config config/mcdns.yaml --state config/demo-state.yaml

# Install the Debian tools that are missing (apt-get update only when something is).
define apt_missing
	@missing=""; for pair in $(1); do cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(APT) update -q && $(APT) install -y -q --no-install-recommends $$missing; \
	fi
endef

tools:
	$(call apt_missing,$(TEST_TOOLS))

bench-tools:
	$(call apt_missing,$(BENCH_TOOLS))

lint: $(TEST_STAMP)
	$(BIN)/ruff check mcdns tests bench

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

unit: $(TEST_STAMP) tools
	$(BIN)/pytest

test: lint typecheck unit

BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(TEST_STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

# Benchmarks (not tests): results in bench/results/, figures in the README.
bench: $(BENCH_STAMP) bench-tools
	$(BIN)/python -m bench.run

bench-resolver: $(BENCH_STAMP) bench-tools tools
	$(BIN)/python bench/resolver_bench.py --rounds 3

bench-kube: $(BENCH_STAMP)
	$(BIN)/python -m bench.kube_scale

# Long runs of what CI runs briefly.
soak: $(TEST_STAMP) tools
	$(BIN)/python -m tests.soak --seconds $${SOAK_SECONDS:-600}

fuzz: $(TEST_STAMP)
	$(BIN)/python -m tests.fuzz.run --inputs $${FUZZ_INPUTS:-1000000}

# The container image, built and run with no daemon (README "The image"): buildah builds
# the Dockerfile into its local storage as localhost/mcdns:dev and :<version>; image-test
# runs it under runc as uid 65532 on a read-only root and queries it. IMAGE_BASE: auto
# (python:3.11-slim-bookworm from the registry when it can be pulled, else a base made
# here from Debian's packages with mmdebstrap, built once), registry, debian, or an image.
# Set on the command line (make image IMAGE_BASE=debian); the environment is not read.
IMAGE       := localhost/mcdns:dev
IMAGE_BASE  := auto
IMAGE_TOOLS := buildah:buildah mmdebstrap:mmdebstrap runc:runc dig:bind9-dnsutils nsenter:util-linux

image:
	$(call apt_missing,$(IMAGE_TOOLS))
	$(PYTHON) tests/image.py build --base $(IMAGE_BASE)

image-test:
	$(call apt_missing,$(IMAGE_TOOLS))
	$(PYTHON) tests/image.py test --image $(IMAGE)

# requirements/image.lock: what the image installs (and its build backend), pinned with
# hashes, from pyproject.toml by pip-compile against PyPI alone (the machine's pip.conf,
# with its local wheel folders, is left out). Existing pins are kept where they still
# fit; `make lock LOCK_FLAGS=--upgrade` moves everything to the newest releases.
LOCK_VENV  := build/lock-venv
LOCK_FLAGS :=
$(LOCK_VENV)/bin/pip-compile:
	$(PYTHON) -m venv $(LOCK_VENV)
	env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null $(LOCK_VENV)/bin/pip install --quiet pip-tools==7.6.2

lock: $(LOCK_VENV)/bin/pip-compile
	env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="make lock" \
	  $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	  --all-build-deps --no-emit-index-url --no-emit-find-links $(LOCK_FLAGS) \
	  --output-file requirements/image.lock pyproject.toml

# The Grafana dashboard (helm/mcdns/files/mcdns-dashboard.json, linked from config/grafana/)
# is written by config/grafana/dashboard.py with grafana-foundation-sdk, pinned here and
# installed in a virtualenv of its own (the SDK is not a dependency of mcdns or its tests).
# dashboard-check fails when the JSON is not what the script writes (tests/test_prometheus.py).
DASHBOARD_VENV := build/dashboard-venv
DASHBOARD_SDK  := grafana-foundation-sdk==1769699379!11.6.0
$(DASHBOARD_VENV)/.installed:
	$(PYTHON) -m venv $(DASHBOARD_VENV)
	$(DASHBOARD_VENV)/bin/pip install --quiet '$(DASHBOARD_SDK)'
	touch $@

dashboard: $(DASHBOARD_VENV)/.installed
	$(DASHBOARD_VENV)/bin/python config/grafana/dashboard.py

dashboard-check: $(DASHBOARD_VENV)/.installed
	$(DASHBOARD_VENV)/bin/python config/grafana/dashboard.py --check

# docs/images/status.png, the README's screenshot of /status: headless chromium on a live
# mcdns serving the demo state (the scenario of tests/test_status.py).
status-screenshot: $(TEST_STAMP) tools
	$(BIN)/python tests/test_status.py --screenshot docs/images/status.png

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache
