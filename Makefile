# `make demo` and `make test` work on a fresh Debian/Ubuntu machine with Python 3.11: each creates .venv if missing.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint options bench clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The stamp records what was installed, so editing pyproject.toml reinstalls.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/dontstop run

test: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q tests

# The inner loop: everything but the tests marked slow (multi-process runs, whole experiments).
test-fast: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow" tests

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks

# After changing a stage's options: rewrite the snapshots `--help` and early errors are answered from (preflight.py).
options: $(VENV)/.installed
	$(BIN)/python -m dontstop.preflight

bench: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/pretrain_throughput.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/wwm_throughput.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/mine_quality.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/select_quality.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/select_scale.py

clean-venv:
	rm -rf $(VENV)
