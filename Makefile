# Two commands on a fresh machine: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: install test test-colab-stack demo bench notebooks clean

install: $(STAMP)

# Reinstalls only when a requirements file changes; safe to run any number of times.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

test: install
	$(PY) -m pytest

# Colab's own package stack (requirements-colab.txt pins it) in a second virtualenv, for the notebook and
# widget tests. The constraints make pip fail rather than install any other version of a pinned package.
COLAB_VENV := .venv-colab
COLAB_PY := $(COLAB_VENV)/bin/python
COLAB_STAMP := $(COLAB_VENV)/.installed
COLAB_PINNED := $(shell sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1/p' requirements-colab.txt | paste -sd'|')
COLAB_TESTS := tests/test_notebooks.py tests/test_colab.py tests/test_viz.py tests/test_colab_session.py

$(COLAB_STAMP): requirements.txt requirements-dev.txt requirements-colab.txt
	test -x $(COLAB_PY) || $(PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_PY) -m pip install --quiet --upgrade pip
	$(COLAB_PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt -c requirements-colab.txt
	$(COLAB_PY) -m pip check
	touch $(COLAB_STAMP)

test-colab-stack: $(COLAB_STAMP)
	$(COLAB_PY) -m pip list | grep -iE '^($(COLAB_PINNED)) '  # the pinned versions this run uses, for the CI log
	$(COLAB_PY) -m pytest $(COLAB_TESTS)

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
