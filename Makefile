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

.PHONY: setup repro repro-paper repro-real test test-fast lint format lock mlflow-ui clean prefect-up prefect-down

# The paper's recipe on top of params.yaml (the embedded default's improvements off, the paper's sizes and
# learning rates). `make repro-paper SET="dataset=cub data.archives=/data/archives"` adds overrides.
PAPER_PROFILE := data.load_size=74 text.image_size=64 text.lr=2.0e-4 gan.image_size=64 gan.width=1.0 \
	gan.epochs=600 gan.lr=2.0e-4 gan.kl_weight=1.0 gan.recon_weight=0.0 gan.vse_weight=0.0 gan.swap_weight=0.0 \
	gan.output=direct gan.conditioning=concat

# Real photos on a CPU (docs/datasets.md, "Settings for real photos"): the embedded default's 37 -> 32 crops, a
# text encoder that reaches 10x chance recall@10 on Oxford-102 in 30 epochs, and the shaded colour model for the
# swap pairs. `make repro-real SET="dataset=flowers data.extracted=/data/flowers"`; on a GPU, repro-paper.
REAL_PROFILE := data.load_size=37 text.image_size=32 text.min_count=3 text.epochs=30 gan.swap_colours=shaded

setup: $(STAMP)

# Rebuilt only when the lock or the project metadata changes; otherwise a no-op.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

repro: setup
	$(VENV)/bin/dvc repro

repro-paper: setup
	$(VENV)/bin/dvc exp run $(addprefix -S ,$(PAPER_PROFILE) $(SET))

repro-real: setup
	$(VENV)/bin/dvc exp run $(addprefix -S ,$(REAL_PROFILE) $(SET))

test: setup
	$(VENV)/bin/pytest

test-fast: setup
	$(VENV)/bin/pytest -m "not slow"

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

mlflow-ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri "$(MLFLOW_TRACKING_URI)" --host 127.0.0.1 --port 5000

clean:
	rm -rf .pytest_cache .ruff_cache

# A local Prefect server on 127.0.0.1:$(PREFECT_PORT) and one process worker per work pool (cpu, gpu), with
# the server's database in $(PREFECT_HOME); PIDs and logs in .prefect-run/. Then deploy: docs/prefect.md.
PREFECT_PORT ?= 4200

prefect-up: setup
	$(PY) -m flows.local_stack up --port $(PREFECT_PORT) --run-dir .prefect-run

# Stops exactly the processes prefect-up recorded (SIGTERM by PID, then SIGKILL).
prefect-down:
	$(PY) -m flows.local_stack down --run-dir .prefect-run
