# Set-up and everyday commands. Needs only Python 3.11+, git and make.
#   make repro   create .venv, install knnlab, run the DVC pipeline
#   make pull    create .venv, fetch the outputs from the team's DVC remote (dvc pull)
#   make test    create/refresh .venv with the dev extras, lint, run the fast tests, then the slow

PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
# Stage commands call `python -m knnlab`: put the venv first on PATH for DVC's subprocesses.
RUN    := PATH="$(BIN):$$PATH" VIRTUAL_ENV="$(abspath $(VENV))"

.PHONY: repro pull test lint format clean-venv constraints

# uv resolves and installs in seconds where pip takes minutes; it comes from PyPI into the
# venv itself (nothing global). If it cannot be installed, pip does the same work. Both
# compile the bytecode at install time (uv does not by default): where PYTHONDONTWRITEBYTECODE
# is set, as on this project's CI machine, every process would otherwise recompile MLflow,
# DVC and scikit-learn from source on import, which doubled the test suite's time.
UV_VERSION := 0.13.9
# The versions the tests passed with. A platform or Python without wheels for one of them
# falls back to the newest versions pyproject.toml allows, and says so.
CONSTRAINTS := constraints.txt

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "knnlab needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) \
	  || echo "make: uv could not be installed; installing with pip (slower)"

# $(call install,<pip requirement>): with uv when the venv has it, else pip; with the
# constraints first, without them if they cannot be met here.
define install
	@if [ -x $(BIN)/uv ]; then \
	  $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c $(CONSTRAINTS) $(1) \
	  || { echo "make: the pinned versions in $(CONSTRAINTS) do not install here; installing the newest allowed"; \
	       $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python $(1); }; \
	else \
	  $(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) $(1) \
	  || { echo "make: the pinned versions in $(CONSTRAINTS) do not install here; installing the newest allowed"; \
	       $(BIN)/python -m pip install --quiet --disable-pip-version-check $(1); }; \
	fi
endef

# The pipeline extra: DVC, MLflow and the figures beside the library (pyproject.toml).
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(call install,-e '.[pipeline]')
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(call install,-e '.[dev]')
	touch $@ $(VENV)/.installed

# Pin what the dev install resolved to (run `make test` after).
constraints: $(VENV)/.installed-dev
	@{ sed -n '1,3p' $(CONSTRAINTS); \
	   $(BIN)/python -m pip freeze --exclude-editable --disable-pip-version-check \
	     | grep -v '^uv=='; } > $(CONSTRAINTS).new && mv $(CONSTRAINTS).new $(CONSTRAINTS)

repro: $(VENV)/.installed
	$(RUN) $(BIN)/dvc repro

# A teammate's clone: the data, splits, model and run markers from the team's DVC remote
# (docs/team-remote.md), after which `make repro` re-runs nothing.
pull: $(VENV)/.installed
	$(RUN) $(BIN)/dvc pull

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The fast tests first (about a minute in all), so a broken kernel, metric or params check
# shows before the end-to-end runs; then the slow ones (real DVC, MLflow and servers).
# pytest-xdist runs them on every core, each test module on one worker (its fixtures once).
# The slow ones get one worker more than there are cores: they spend part of their time
# waiting (subprocesses starting, servers, polls): with two workers on two cores, 17 % of
# the cores' time went idle; with three, 10 %.
SLOW_WORKERS := $(shell $(PYTHON) -c 'import os; print(len(os.sched_getaffinity(0)) + 1)' 2>/dev/null || echo 3)
test: lint
	$(RUN) $(BIN)/python -m pytest -m "not slow" -n auto --dist loadscope
	$(RUN) $(BIN)/python -m pytest -m slow -n $(SLOW_WORKERS) --dist loadscope

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean-venv:
	rm -rf $(VENV)

# --- the team's MLflow server (docs/team-server.md) ---------------------------------------
# `make server DATA=~/mlflow-team [PORT=5000] [HOST=127.0.0.1]`: knnlab server in the
# foreground, PostgreSQL and artifacts in DATA (created on first use); Ctrl-C stops it.
# `make test` runs test-deps first: PostgreSQL for tests/tracking/test_server_postgres.py is
# found, or installed with apt-get when make runs as root (about a minute, once); elsewhere
# those tests are skipped, saying why.
.PHONY: server test-deps
server: PORT ?= 5000
server: HOST ?= 127.0.0.1
server: $(VENV)/.installed-team
	$(if $(DATA),,$(error make server needs DATA=<folder for the database and artifacts>))
	$(BIN)/knnlab server --data "$(DATA)" --host "$(HOST)" --port "$(PORT)"

$(VENV)/.installed-team: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(call install,-e '.[team]')
	touch $@ $(VENV)/.installed

# Debian's Chromium for the browser tests (tests/tracking/test_mlflow_ui.py and the DVC
# plots pages), likewise: found, or installed with apt-get as root (about a minute, once).
test: test-deps
test-deps: $(VENV)/.installed-dev
	@$(BIN)/knnlab server --check || echo "make: PostgreSQL is missing and cannot be \
	installed here (that needs root and apt-get): the team-server tests will be skipped; \
	install it with: sudo apt-get install postgresql"
	@command -v chromium >/dev/null 2>&1 \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	       && echo "make: installing Debian's chromium for the browser tests" \
	       && apt-get update -qq >/dev/null \
	       && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } \
	  || echo "make: Chromium is missing and cannot be installed here (that needs root and \
	apt-get): the browser tests will be skipped; install it with: sudo apt-get install chromium"
