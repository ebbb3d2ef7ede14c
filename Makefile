# Quick start: `make demo` and `make test`. Everything installs into .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-fast lint format demo bench mutate clean

venv: $(STAMP)

$(STAMP): setup.py pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[test,gpu,onnx,dev]'
	touch $(STAMP)

# One pytest-xdist worker per core; tests that share an expensive module fixture carry
# @pytest.mark.xdist_group and run on one worker (--dist loadgroup), the rest are spread one by one.
XDIST := -n auto --dist loadgroup

test: venv
	$(BIN)/python -m pytest -q $(XDIST) tests

# Everything but the tests marked slow (10 s and more: fuzzing, soak, subprocesses, notebooks, compiling).
test-fast: venv
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow" tests

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: venv
	$(BIN)/python -m training.demo --out runs/demo

# Reference runs, named by machine and date (e.g. cpu-2core-epyc-2026-11-27-decode.json), then the report.
bench: venv
	$(BIN)/rsna-mammo bench decode --files 6 --repeats 3 --json 'benchmarks/results/{machine}-{date}-decode.json'
	$(BIN)/rsna-mammo bench speedup --files 6 --repeats 3 --json 'benchmarks/results/{machine}-{date}-decode-speedup.json'
	$(BIN)/rsna-mammo bench report benchmarks/results/*-decode*.json --out runs/bench-report

# Mutation testing of the core modules (mutmut's operators; each module's mutants against its own
# test files; about an hour on 2 cores, not run in CI). Writes mutation-<date>.json and .md beside it.
mutate: venv
	nice -n 19 $(BIN)/python -m benchmarks.mutation --json 'benchmarks/results/mutation-{date}.json'

clean:
	rm -rf $(VENV) runs build *.egg-info
