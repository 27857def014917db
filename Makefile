# The two commands of the README. Each sets up .venv on first use (or when the
# dependencies change) with the pinned versions in constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint typecheck unit quick default-model clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[train,cluster,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fakewatch demo

# retrain the shipped model and its figures (needs ../shared/data; see MODEL_CARD.md)
default-model: $(STAMP)
	scripts/build_default_model.sh

test: lint typecheck unit

# The quick loop while changing the code (a few minutes): ruff, mypy and the unit tests,
# without the tests that start real peers (RTSP server, Chromium, Prometheus), the
# reliability and cluster tests, and the slow ones. `make test` runs them all.
QUICK := not peer and not reliability and not cluster and not slow

check: lint typecheck quick

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/python scripts/typecheck.py

unit: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

quick: $(STAMP)
	$(BIN)/python -m pytest -m "$(QUICK)" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .pytest_cache .ruff_cache
