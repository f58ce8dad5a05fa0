# Two commands on a fresh machine: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: install test demo bench notebooks clean

install: $(STAMP)

# Reinstalls only when a requirements file changes; safe to run any number of times.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

test: install
	$(PY) -m pytest

demo: install
	$(PY) -m helpers demo

# The peers (ONNX Runtime, OpenVINO) are installed for the benchmarks only.
$(BENCH_STAMP): requirements-bench.txt $(STAMP)
	$(PY) -m pip install --quiet -r requirements-bench.txt
	touch $(BENCH_STAMP)

bench: install $(BENCH_STAMP)
	$(PY) -m bench

notebooks: install
	rm -rf outputs/notebooks  # quick-mode checkpoints of an older run must not be resumed
	$(PY) -m helpers notebooks --out outputs/notebooks

clean:
	rm -rf outputs .pytest_cache
