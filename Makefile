# Set-up and everyday commands. Needs only Python 3.11+, git and make.
#   make repro   create .venv, install knnlab, run the DVC pipeline
#   make test    create/refresh .venv with the dev extras, lint, run the whole test suite

PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
# Stage commands call `python -m knnlab`: put the venv first on PATH for DVC's subprocesses.
RUN    := PATH="$(BIN):$$PATH" VIRTUAL_ENV="$(abspath $(VENV))"

.PHONY: repro test lint format clean-venv

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "knnlab needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

repro: $(VENV)/.installed
	$(RUN) $(BIN)/dvc repro

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(RUN) $(BIN)/python -m pytest

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean-venv:
	rm -rf $(VENV)
