# Two entry points for a fresh machine with Python 3.11 + pip:
#   make demo   install, then run the main job on the embedded default dataset
#   make test   install, then lint and run the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch 2.13.0: a CPU wheel on the CI/dev machines, the CUDA build from PyPI on GPU machines.
TORCH  ?= torch==2.13.0

.PHONY: install demo test test-all realdata lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

demo: install
	$(BIN)/diffuse-uda demo --out demo_output

lint: install
	$(BIN)/ruff check src tests benchmarks

test: lint
	$(BIN)/pytest -q -m "not slow"

# Everything, including the real-data tests (they skip when ../shared/data is absent).
test-all: lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) demo_output .pytest_cache .ruff_cache
