# mixpoet-kit — the two commands of the README are `make reproduce` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel by default (an unpinned torch pulls a multi-GB CUDA build); on a GPU machine use e.g.
#   make setup TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= notebooks,test
PROFILE ?=
# More training seeds for `make reproduce` (each a whole run; results pooled over training × generation seeds),
# e.g. TRAIN_SEEDS=1234,1235,1236; empty = the profile's seed only.
TRAIN_SEEDS ?=
# Raw data: downloaded from the public origins, unless a local mirror is given. A ../shared/data/raw
# folder beside the clone (this project's CI layout) is used as the mirror automatically.
SHARED_MIRROR := $(abspath ../shared/data/raw)
MIXPOET_MIRROR ?= $(if $(wildcard $(SHARED_MIRROR)/mixpoet),$(SHARED_MIRROR),)
export MIXPOET_MIRROR
NBVAL := --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=900

.PHONY: setup reproduce reference test lint test-unit test-notebooks data refresh-notebooks clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH_SPEC)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[$(EXTRAS)]"
	@bash scripts/install_fonts.sh
	@touch $@

## The main job: data → every notebook, executed with papermill into runs/<profile>-local/ (not tracked by git),
## then the report, which compares the run with the committed reference run runs/<profile>/.
reproduce: setup
	$(BIN)/mixpoet reproduce $(if $(PROFILE),--profile $(PROFILE),) $(if $(TRAIN_SEEDS),--train-seeds $(TRAIN_SEEDS),)

## Maintainers: regenerate the committed reference run runs/<profile>/ and figures/ (overwrites them on purpose).
reference: setup
	$(BIN)/mixpoet reproduce --reference $(if $(PROFILE),--profile $(PROFILE),) $(if $(TRAIN_SEEDS),--train-seeds $(TRAIN_SEEDS),)

## The tests: lint + format check + type check, library unit tests, then nbval over the notebooks (smoke profile).
test: setup
	$(MAKE) --no-print-directory lint test-unit test-notebooks

lint:
	$(BIN)/ruff check mixpoet_lib tests scripts
	$(BIN)/ruff format --check mixpoet_lib tests scripts
	$(BIN)/mypy

test-unit:
	OMP_NUM_THREADS=1 TQDM_DISABLE=1 $(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 tests

test-notebooks:
	MIXPOET_PROFILE=smoke TQDM_DISABLE=1 $(BIN)/python -m pytest -q -p no:cacheprovider $(NBVAL) notebooks/

data: setup
	$(BIN)/mixpoet data prepare $(if $(PROFILE),--profile $(PROFILE),)

## Contributors: rebuild notebooks/*.ipynb from their .py twins and store fresh outputs (tutorial profile).
refresh-notebooks: setup
	$(BIN)/python scripts/refresh_notebooks.py $(if $(PROFILE),--profile $(PROFILE),)

clean:
	rm -rf $(VENV) .pytest_cache
