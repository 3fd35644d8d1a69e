# hwnas developer entry points. Every target works from a fresh clone: it creates .venv and
# installs what it needs (docs/getting-started.md). Times and test counts: docs/development.md.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS := onnx,tflite,coreml,energy,agent,data,sod,seg,search,dev,docs
STAMP  := $(VENV)/.installed
TEST_WORKERS ?=

.PHONY: setup test test-fast demo lint docs clean gpu-check

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

test: setup  # everything, what CI runs
	$(BIN)/python -m pytest -q $(TEST_WORKERS)

test-fast: setup  # everything but the tests marked slow (subprocesses, training, conversion)
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup  # style, and the layers and no-circles contract of pyproject.toml
	$(BIN)/ruff check hwnas tests bench tools
	$(BIN)/ruff format --check hwnas tests bench tools
	$(BIN)/lint-imports

docs: setup  # the site in site/, warnings are errors
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

demo: setup
	$(BIN)/hwnas devices
	$(BIN)/hwnas space mini
	$(BIN)/hwnas arch max --space mini
	$(BIN)/hwnas profile --device cpu --space mini --resolution 32x32 --rounds 2 --energy
	$(BIN)/hwnas lut validate --device cpu --space mini --resolution 32x32 --samples 16 --rounds 2
	$(BIN)/hwnas train supernet --space mini --data synthetic --epochs 3 --selfkd --out runs/mini-saliency/supernet.pt
	@budget=$$($(BIN)/python -c "from dataclasses import replace; from hwnas.hardware.table import LatencyTable; \
	from hwnas.space import SearchSpace; s = SearchSpace.load('mini'); t = LatencyTable.load('lut/cpu-mini.parquet', s); \
	lo, hi = (t.predict(replace(a, resolution=(32, 32))) for a in (s.min(), s.max())); print(f'{(lo + hi) / 2:.3f}ms')"); \
	echo "budget: $$budget (halfway between the smallest and largest subnet in the table)"; \
	$(BIN)/hwnas search --device cpu --space mini --supernet runs/mini-saliency/supernet.pt --budget $$budget --evals 24
	$(BIN)/hwnas report --device cpu --space mini --arch runs/mini-search-cpu/best.json \
		--supernet runs/mini-saliency/supernet.pt --json runs/mini-search-cpu/report.json
	$(BIN)/hwnas export --supernet runs/mini-saliency/supernet.pt --arch runs/mini-search-cpu/best.json \
		--format onnx,tflite,coreml,tensorrt --out export


# On a CUDA machine: every GPU path in one run (bench/gpu_check.py). It needs no venv and no network:
# the machine's own Python with torch, and hwnas from this tree. Elsewhere it says so and exits 0.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	PYTHONPATH=. PYTHONUNBUFFERED=1 $(GPU_PYTHON) -m bench.gpu_check

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
