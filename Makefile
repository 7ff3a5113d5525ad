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

.PHONY: install demo test bench soak clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_PIN)"
	@# The project, its dev extra and iopath (which importing torchmultimodal needs). The editable
	@# install maps features/ and pipelines/ under deepsets with a meta-path finder; setuptools
	@# reports that in an information box (no action to take), filtered here by its title.
	PYTHONWARNINGS="ignore:Editable installation." $(PIP) install --quiet -e ".[dev]" iopath
	@# Last and without its requirements: torchmultimodal-nightly pins DALL-E (-> torchvision and
	@# a matching torch) and attrs==23.1.0 for parts the project never imports; the fusion module
	@# it uses needs torch and iopath only. Installed before another package, its pins would make
	@# pip's resolver print ERROR lines about DALL-E and attrs.
	$(PIP) install --quiet --no-deps torchmultimodal-nightly
	touch $(STAMP)

demo: install
	$(VENV)/bin/deepsets demo

test: install
	$(PY) -m pytest -q

# The quick speed benchmarks, 3 runs of each, beside the ranges recorded in benchmarks/RESULTS.md.
bench: install
	$(PY) -m benchmarks.speed.quick

# Jobs of every command back to back (100 embed jobs, 20 of each other command), counting what
# each leaves running or open; `python -m benchmarks.soak --quick` runs within `make test`.
soak: install
	$(PY) -m benchmarks.soak

clean:
	rm -rf $(VENV) demo_output ray_results mlruns mlflow.db .pytest_cache
