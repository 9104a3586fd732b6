# The README's commands. `make repro` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

# Offline-friendly and quiet: no telemetry from DVC, MLflow or Prefect; state kept inside the project.
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db
export PYTHONUNBUFFERED := 1
# Stage commands (`python -m pipeline.x`) must run on the project's interpreter.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup repro repro-paper repro-real test test-fast lint format lock mlflow-ui clean prefect-up prefect-down \
	browser plots-template ui-check demo

setup: $(STAMP)

# Rebuilt only when the lock or the project metadata changes; otherwise a no-op.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

repro: setup
	$(VENV)/bin/dvc repro

# The paper's recipe on top of params.yaml (its one definition: sisgan/config.py, PAPER_RECIPE).
# `make repro-paper SET="dataset=cub data.archives=/data/archives"` adds overrides.
repro-paper: setup
	$(VENV)/bin/dvc exp run $$($(PY) -m pipeline.profile paper) $(addprefix -S ,$(SET))

# Real photos on a CPU (docs/datasets.md, "Settings for real photos"): the `photos` profile (sisgan/config.py).
# `make repro-real SET="dataset=flowers data.extracted=/data/flowers"`; on a GPU, repro-paper.
repro-real: setup
	$(VENV)/bin/dvc exp run $$($(PY) -m pipeline.profile photos) $(addprefix -S ,$(SET))

test: setup browser
	$(VENV)/bin/pytest

test-fast: setup browser
	$(VENV)/bin/pytest -m "not slow"

# Debian's Chromium for the browser tests (tests/test_demo.py, tests/test_plots_page.py) and `make ui-check`,
# installed when missing (root, or sudo). Without it the browser tests skip, except under CI=true, where
# they fail: CI runs them.
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  { $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    $$sudo apt-get install -y -qq --no-install-recommends chromium > /dev/null; } \
	  || { echo "could not install chromium: the browser tests will be skipped"; [ -z "$$CI" ]; }; \
	fi

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Re-resolve the pinned set after changing dependencies in pyproject.toml.
lock: setup
	{ echo "# Exact versions installed by 'make setup' (pip freeze of the resolved set; Python 3.11, x86_64)."; \
	  echo "# Regenerate: make lock"; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^sisgan'; } > requirements.lock

# MLflow 3.17 opens experiments in its GenAI view unless the address asks for the training view.
mlflow-ui: setup
	@echo "MLflow UI: http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
	$(VENV)/bin/mlflow ui --backend-store-uri "$(MLFLOW_TRACKING_URI)" --host 127.0.0.1 --port 5000

# Try a model in the browser: a page on http://127.0.0.1:8765/ (MODEL: a folder or models:/<name>@<alias>).
MODEL ?= models
demo: setup
	$(VENV)/bin/sisgan demo --model $(MODEL)

# The MLflow UI and the demo page as a user sees them, checked in headless Chromium; writes docs/images/*.png.
ui-check: setup browser
	$(PY) docs/ui_check.py

# Rebuild .dvc/html/plots.html (the offline `dvc plots show` page) from the npm packages pinned beside it.
plots-template:
	npm ci --prefix .dvc/html --no-audit --no-fund
	$(PY) .dvc/html/build.py

clean:
	rm -rf .pytest_cache .ruff_cache

# A local Prefect server on 127.0.0.1:$(PREFECT_PORT) and one process worker per work pool (cpu, gpu), with
# the server's database in $(PREFECT_HOME); PIDs, logs in .prefect-run/. Then deploy: docs/orchestration.md.
PREFECT_PORT ?= 4200

prefect-up: setup
	$(PY) -m flows.local_stack up --port $(PREFECT_PORT) --run-dir .prefect-run

# Stops exactly the processes prefect-up recorded (SIGTERM by PID, then SIGKILL).
prefect-down:
	$(PY) -m flows.local_stack down --run-dir .prefect-run
