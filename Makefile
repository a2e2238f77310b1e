# Set-up and entry points. `make demo` and `make test` are the README contract.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# e.g. --index-url https://download.pytorch.org/whl/cpu to pick the build
TORCH_PIP_ARGS ?=
# pytest-xdist workers for `make test` (one per core, at most 4; 0 runs the suite in one process)
TEST_WORKERS ?= auto
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the package metadata changes (idempotent and fast otherwise).
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/chromaqpi demo --out results/demo

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile

clean:
	rm -rf $(VENV) results build src/*.egg-info
