# emotalk3d: `make demo` (set up, then render the built-in demo) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, pinned to the CPU build on CPU machines; override for CUDA, e.g.
#   make TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" setup
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.emotalk3d-installed
DEMO_OUT ?= outputs/demo
DEMO_RESOLUTION ?= 256

.PHONY: setup system-deps web demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

# the viewer's web client: npm packages from package-lock.json, then the bundle in viewer/web/dist
web:
	cd viewer/web && npm ci --no-audit --no-fund && npm run build

setup: system-deps $(STAMP) web

# Render every clip of examples/ with the committed demo model (checkpoints/demo) from three
# views; `emotion auto` lets the emotion extractor decide (it prints its decision).
demo: setup
	@for clip in examples/*.wav; do \
	  $(BIN)/python render.py --audio $$clip --emotion auto --views 0,30,-30 \
	    --resolution $(DEMO_RESOLUTION) --out $(DEMO_OUT)/$$(basename $$clip .wav).mp4 || exit 1; \
	done
	@echo "demo videos (view 0, 30 and -30 degrees of each example clip):"
	@ls -1 $(DEMO_OUT)/*.mp4

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache viewer/web/node_modules viewer/web/dist
