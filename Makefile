# hwnas developer entry points. `make test` and `make demo` work from a fresh clone:
# they create .venv and install everything they need (see README "Install").
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS := onnx,tflite,coreml,energy,search,dev
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
	$(BIN)/hwnas space mini
	$(BIN)/hwnas arch max --space mini
	@echo "make demo: the profile -> train -> search -> export pipeline is not there yet (issue 11)."


clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
