# Two commands a new user needs: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# CPU build of torch, pinned first so that nothing pulls a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
STAMP  := $(VENV)/.installed

export MLFLOW_DISABLE_TELEMETRY := true
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_PIN)"
	# torchmultimodal-nightly's own requirements would replace torch (see pyproject.toml).
	$(PIP) install --quiet --no-deps torchmultimodal-nightly
	$(PIP) install --quiet iopath ftfy regex
	$(PIP) install --quiet -e ".[dev]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/deepsets demo

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) -m benchmarks.speed.collate --quick
	$(PY) -m benchmarks.speed.attention --quick
	$(PY) -m benchmarks.speed.model --quick
	$(PY) -m benchmarks.speed.ray_train --quick

clean:
	rm -rf $(VENV) demo_output ray_results mlruns mlflow.db .pytest_cache
