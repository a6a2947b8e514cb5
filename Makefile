# Quick start: `make serve` and `make test` each bootstrap .venv on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGIN_DIRS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
BENCH ?=

.PHONY: install serve test bench clean

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGIN_DIRS))
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-e '.[test]' $(foreach p,$(PLUGIN_DIRS),-e ./$(p))
	touch $@

install: $(STAMP)

serve: install  # the daemon with every bundled plugin, in the foreground; SERVE_ARGS adds options
	exec $(BIN)/flyte-connector serve --port 8000 --metrics-port 9090 $(SERVE_ARGS)

test: install postgres slurm
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/run.py $(BENCH)

clean:
	rm -rf $(VENV) build *.egg-info

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
