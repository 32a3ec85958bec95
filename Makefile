# p2t: `make demo` screens examples/ with the bundled model; `make test` runs the test suite.
# Both set up a virtual environment first (Python 3.11, CPU torch unless TORCH_SPEC says otherwise).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup setup-dev demo test bench data encoder default-model clean

# Runtime only (torch, fair-esm, typer, biopython, pyarrow, rich, ...): what `make demo` needs.
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e .
	touch $@

# Runtime plus the test and tool dependencies (pytest, Ray, pandas, polars, DuckDB, ...).
setup-dev: $(VENV)/.installed-dev

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/p2t screen examples/library.fasta --tasks all -o results/demo --overwrite --report
	$(BIN)/python examples/show_results.py examples/library.fasta results/demo
	$(BIN)/p2t screen examples/pdb_test_chains.fasta --tasks all \
		-o results/demo_pdb --overwrite -q
	$(BIN)/python examples/show_structures.py examples/pdb_test_chains.tsv results/demo_pdb

test: setup-dev
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/p2t bench --n 200 --naive-n 10 --naive-seconds 30  # minutes on 2 CPU cores; p2t bench --help for more

# Real training data from Debian and PyPI packages (needs root for apt-get; about 10 minutes).
data: setup-dev
	command -v mmseqs >/dev/null || (apt-get update && apt-get install -y mmseqs2)
	$(BIN)/python tools/data/prepare_sequences.py
	$(BIN)/python tools/data/promod3.py
	$(BIN)/python tools/data/structure_labels.py
	$(BIN)/python tools/data/scl2205.py
	$(BIN)/python tools/data/aaanalysis_tasks.py
	$(BIN)/python tools/data/metastudent_binding.py
	$(BIN)/python tools/data/example_library.py
	$(BIN)/python tools/data/example_structures.py

# The default model's encoder: masked-LM pre-training of an ESM2-architecture encoder on the
# training splits (homologs of every held-out protein removed first); about 27 min on 2 CPU cores.
encoder: data
	$(BIN)/python tools/data/pretrain_corpus.py
	$(BIN)/p2t pretrain data/pretrain/train.fasta --valid data/pretrain/valid.fasta \
		-o data/encoder/esm2_t4_128_p2t.pt --steps 1800 --warmup 150 --lr 1e-3 --device cpu

# Rebuild the bundled default model from scratch, stage by stage (times on 2 CPU cores; each stage
# starts from the one before): the data; stage 0, the encoder's masked-LM pre-training (`make
# encoder`, ~27 min); stage 1, examples/train_stage1.toml (~51 min), whose encoder is exported for
# stage 2, examples/train_stage2.toml (~33 min); stage 3, examples/train_stage3.toml (stage 2's whole
# model trained on, ~12 min); stage 4, examples/train.toml (stage 3's trained on, mostly 3Di,
# ~13 min; each stage's time is to the epoch kept, as the model card's Training stages table gives); then per-task temperatures fitted on validation, test metrics and calibration on the
# whole test splits against trivial and classical baselines, every task that does not beat both by
# more than 0.02 withdrawn from the model, and the model card (MODEL_CARD.md, with every stage's
# time). Every stage trains into models/local/ (git-ignored); the last one's model then replaces the
# bundled models/p2t-default, which the card is written for.
default-model: encoder
	$(BIN)/p2t train examples/train_stage1.toml --fresh
	$(BIN)/python tools/export_encoder.py models/local/p2t-default-stage1 examples/train_stage1.toml \
		data/encoder/p2t_default_encoder.pt
	$(BIN)/p2t train examples/train_stage2.toml --fresh
	$(BIN)/p2t train examples/train_stage3.toml --fresh
	$(BIN)/p2t train examples/train.toml --fresh
	rm -rf models/p2t-default && cp -r models/local/p2t-default models/p2t-default
	$(BIN)/python tools/model_card.py examples/train.toml models/p2t-default --max-test 3000 \
		--calibrate --calibration-valid 60 --withdraw

clean:
	rm -rf results .pytest_cache
