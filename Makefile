# emotalk3d: `make demo` (set up, then render the built-in demo) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, pinned to the CPU build on CPU machines; override for CUDA, e.g.
#   make TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" setup
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.emotalk3d-installed
DEMO_DATA ?= data/demo-tiny

.PHONY: setup system-deps demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

setup: system-deps $(STAMP)

demo: setup
	$(BIN)/emotalk3d data synth --rig builtin --size tiny --subjects 1 --seed 0 --out $(DEMO_DATA)
	$(BIN)/emotalk3d data check $(DEMO_DATA)
	$(BIN)/emotalk3d data preview $(DEMO_DATA) --out $(DEMO_DATA)/preview.png
	@echo "demo dataset: $(DEMO_DATA)  preview: $(DEMO_DATA)/preview.png"

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
