# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test gpu-check clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m raynas demo

# The report's browser test needs Chromium: installed where this runs as root with apt (CI), else it skips.
test: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends chromium >/dev/null; } || echo "make test: no Chromium, its test will skip"
	$(PY) -m pytest

# The GPU path end to end (benchmarks/gpu_check.py): "no GPU: skipped" on a machine without one. Where the
# CUDA torch is another Python's (a lent GPU machine's python3), `make gpu-check GPU_PY=python3`.
GPU_PY ?= $(PY)
gpu-check: $(if $(filter $(PY),$(GPU_PY)),$(STAMP))
	$(GPU_PY) benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) *.egg-info
