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

serve: install
	@echo "flyte-connector serve is not built yet (issue: the daemon); try: $(BIN)/flyte-connector list" >&2
	@exit 1

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/run.py $(BENCH)

clean:
	rm -rf $(VENV) build *.egg-info
