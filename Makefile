# Quick start: `make demo` and `make test`. Everything installs into .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test demo bench clean

venv: $(STAMP)

$(STAMP): setup.py Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[test,gpu]'
	touch $(STAMP)

test: venv
	$(BIN)/python -m pytest -q tests

demo: venv
	$(BIN)/python -m training.demo --out runs/demo

bench: venv
	$(BIN)/python -m benchmarks.decode_speedup --json benchmarks/results/decode-speedup-cpu.json

clean:
	rm -rf $(VENV) runs build *.egg-info
