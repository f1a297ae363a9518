# Set-up and entry points. `make quick` and `make test` create .venv and install the project on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup quick publish-quick test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: the `quick` suite on the embedded default data, into runs/quick/ (results, leaderboards, HTML).
# It leaves the tracked tree clean; `make publish-quick` also republishes leaderboards/quick.*.
quick: $(STAMP)
	$(BIN)/bench run --suite quick --out runs/quick

publish-quick: $(STAMP)
	$(BIN)/bench run --suite quick --out runs/quick --publish leaderboards

# The tests, offline, on two worker processes (pytest-xdist; PYTEST_WORKERS=0 runs them in this process).
PYTEST_WORKERS ?= 2
test: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -n $(PYTEST_WORKERS)

clean:
	rm -rf runs .pytest_cache
