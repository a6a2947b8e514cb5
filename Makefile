# Quick start: `make serve` and `make test` each bootstrap .venv on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
BENCH ?=

FUZZ_EXAMPLES ?= 5000
SOAK_SECONDS ?= 180

.PHONY: install install-flyte serve test lint bench clean fuzz soak dist

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGIN_DIRS))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-e '.[test,uvloop]' $(foreach p,$(PLUGIN_DIRS),-e ./$(p))
	touch $@

install: $(STAMP)

# The Flyte SDK and the flyteplugins-* connectors the tests serve: only `make test` pays for them.
FLYTE_STAMP := $(VENV)/.installed-flyte
# Unmodified flytekitplugins-* go to a directory of their own that only their tests put on
# sys.path: installed into the venv, their flytekit.plugins entry points would make every
# other test's discovery import flytekit.
KIT_PLUGINS := $(VENV)/flytekit-plugins
$(FLYTE_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-e '.[test,flyte,flyte-test,flyte1,flytekit,flytekit-test]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --upgrade \
		--target $(KIT_PLUGINS) flytekitplugins-openai==1.16.31 flytekitplugins-slurm==1.16.31
	touch $@

install-flyte: $(FLYTE_STAMP)

# The daemon with every bundled plugin, in the foreground. Ports come from the CLI defaults
# (8000, 9090) or FLYTE_CONNECTOR_PORT / FLYTE_CONNECTOR_METRICS_PORT; SERVE_ARGS adds options.
# scripts/foreground.py hands the terminal to the daemon so Ctrl-C ends it, not make.
serve: install
	exec $(BIN)/python scripts/foreground.py $(BIN)/flyte-connector serve $(SERVE_ARGS)

test: install install-flyte postgres slurm helm
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-backend

# The Flyte backend suite (tests/backend, Go): the daemon driven as the backend's connector
# plugin drives it. Go's module cache keeps the first build's downloads between runs.
.PHONY: test-backend
test-backend: install install-flyte
	@if command -v go >/dev/null 2>&1; then \
		cd tests/backend && FLYTE_CONNECTOR_BIN=$(abspath $(BIN))/flyte-connector \
			go test -count=1 -timeout 10m -v ./...; \
	else echo "skipped: the Flyte backend suite (tests/backend) needs go on PATH"; fi

# helm for the chart's tests (helm lint, helm template), built from source with Go into
# .venv/bin: where Go or the module proxy cannot be had, those tests are skipped.
HELM_VERSION ?= v3.16.4
.PHONY: helm
helm: install
	@test -x $(BIN)/helm || { command -v go >/dev/null 2>&1 && \
		GOBIN=$(abspath $(BIN)) GOFLAGS=-buildvcs=false go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); } || \
		echo "warning: could not install helm (needs Go); the Helm chart's tests will be skipped" >&2

lint: install install-flyte  # ruff (pyflakes, pycodestyle, isort, ...) and mypy, configured in pyproject.toml
	$(BIN)/ruff check connector_cli plugins tests bench docs/examples scripts
	$(BIN)/mypy
	@if command -v go >/dev/null 2>&1; then cd tests/backend && \
		{ test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: reformat these" >&2; exit 1; }; } && \
		go vet ./...; fi

bench: install install-flyte  # the c0 and pyflyte comparisons need the `flyte` and `flytekit` extras
	$(BIN)/python bench/run.py $(BENCH)

fuzz: install  # the daemon fuzz tests with many more examples (FUZZ_EXAMPLES, default 5000)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/test_fuzz_daemon.py -q \
		-p no:cacheprovider -o timeout=3600

soak: install  # drive a real daemon for SOAK_SECONDS; prints RSS slope, fds and job files
	$(BIN)/python bench/soak.py --seconds $(SOAK_SECONDS)

# Wheels of the core and of each bundled plugin, for installing without a package index
# (docs/getting-started.md): `pip install dist/*.whl`, or copy them into an image.
DIST ?= dist
dist: install
	rm -rf $(DIST) build
	$(BIN)/python -m pip wheel --quiet --disable-pip-version-check --no-deps \
		--no-build-isolation -w $(DIST) . $(addprefix ./,$(PLUGIN_DIRS))
	rm -rf build $(addsuffix /build,$(PLUGIN_DIRS))
	@ls $(DIST)

clean:
	rm -rf $(VENV) build *.egg-info dist

.PHONY: docs
docs: install
	$(BIN)/python -m connector_cli.cli.reference docs/cli.md

# The SQL plugin's tests start a throwaway PostgreSQL server: install Debian's package when
# initdb is missing (it is not on PATH there, so /usr/lib/postgresql/*/bin counts too).
.PHONY: postgres
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; } || \
		{ echo "warning: could not install PostgreSQL; its tests will be skipped" >&2; test "$$CI" != true; }

# The Slurm plugin's tests start a throwaway single-node Slurm (slurmctld, slurmd, munged),
# one with accounting (slurmdbd on MariaDB) and an sshd as its login node: install Debian's
# packages when a daemon is missing.
.PHONY: slurm
slurm:
	@{ export PATH="$$PATH:/usr/sbin:/sbin"; command -v slurmctld && command -v slurmd && \
		command -v sbatch && command -v munged && command -v sshd && command -v slurmdbd && \
		command -v mariadbd; } >/dev/null 2>&1 || \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
			slurm-wlm munge openssh-server slurmdbd mariadb-server; } || \
		{ echo "warning: could not install Slurm; its tests will be skipped" >&2; test "$$CI" != true; }
