# hwnas developer entry points. `make test` and `make demo` work from a fresh clone:
# they create .venv and install everything they need (see README "Install").
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS := onnx,tflite,coreml,energy,data,search,dev
STAMP  := $(VENV)/.installed

.PHONY: setup test demo lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check hwnas tests bench

demo: setup
	$(BIN)/hwnas devices
	$(BIN)/hwnas space mini
	$(BIN)/hwnas arch max --space mini
	$(BIN)/hwnas profile --device cpu --space mini --resolution 32x32 --rounds 2
	$(BIN)/hwnas lut validate --device cpu --space mini --resolution 32x32 --samples 8 --rounds 2
	@echo "make demo: train -> search -> export are not there yet (issue 11)."


clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
