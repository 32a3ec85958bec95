# p2t: `make demo` screens examples/ with the bundled model; `make test` runs the test suite.
# Both set up a virtual environment first (Python 3.11, CPU torch unless TORCH_SPEC says otherwise).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/p2t screen examples/library.fasta --tasks all -o results/demo --overwrite
	$(BIN)/python examples/check_positions.py examples/library.fasta results/demo

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/p2t bench

clean:
	rm -rf results .pytest_cache
