"""MLflow helpers: where runs go, one run per stage, and a no-op tracker when tracking is off.

Nothing happens at import: the tracking URI is resolved when a run starts. mlflow is imported lazily so
the GPU machine (no mlflow installed) can train with tracking disabled.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sisgan.io import write_json

PARENT_RUN_ENV = "SISGAN_MLFLOW_PARENT_RUN_ID"  # set by the Prefect flow: stage runs nest under it
# The MLflow UI (3.x) picks an experiment's view from this tag; without it, it guesses and opens the GenAI
# view (traces, prompts), where training runs, their metric charts and images are one toggle away.
EXPERIMENT_KIND_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
# MLflow 3.17's UI ignores that tag: a switch (GenAI | Model training) picks the view, from this query
# parameter or else the browser's last choice (GenAI at first). Links the project writes carry it.
TRAINING_VIEW_QUERY = "workflowType=machine_learning"


def run_page(experiment_id: str, run_id: str) -> str:
    """The UI route of a run page in the training view, relative to the UI's address (`<ui>/` + this)."""
    return f"#/experiments/{experiment_id}/runs/{run_id}?{TRAINING_VIEW_QUERY}"


RUNS_DIR = "runs"  # runs/<stage>.json: the MLflow run id of each stage's last run (not tracked by git/DVC)


def tracking_uri(root: str | Path = ".") -> str:
    """MLFLOW_TRACKING_URI if set, else a SQLite file in the project root (absolute path)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def artifact_root(root: str | Path = ".") -> str:
    return (Path(root).resolve() / "mlruns").as_uri()


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'gan': {'lr': 1}} -> {'gan.lr': 1} (MLflow params are flat)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out |= flatten(v, f"{key}.")
        else:
            out[key] = v
    return out


class Tracker:
    """The slice of MLflow the stages use. The base class is the no-op used when tracking is off."""

    run_id: str | None = None
    experiment_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

    def log_artifacts(self, folder: str | Path, artifact_path: str | None = None) -> None: ...

    def log_image(self, path: str | Path, key: str, step: int | None = None) -> None:
        """An image shown on the run page's charts (a step slider when logged at several steps)."""

    def set_tags(self, tags: Mapping[str, str]) -> None: ...


class MlflowTracker(Tracker):
    def __init__(self, mlflow: Any, run: Any) -> None:
        self.mlflow, self.run = mlflow, run
        self.run_id = run.info.run_id
        self.experiment_id = run.info.experiment_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = {k: ("null" if v is None else v) for k, v in flatten(params).items()}
        self.mlflow.log_params(flat)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        numeric = {
            k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        self.mlflow.log_metrics(numeric, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.mlflow.log_artifact(str(path), artifact_path)

    def log_artifacts(self, folder: str | Path, artifact_path: str | None = None) -> None:
        self.mlflow.log_artifacts(str(folder), artifact_path)

    def log_image(self, path: str | Path, key: str, step: int | None = None) -> None:
        from PIL import Image

        with Image.open(path) as image:
            self.mlflow.log_image(image.convert("RGB"), key=key, step=step)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.mlflow.set_tags(dict(tags))


def ensure_experiment(mlflow: Any, name: str, root: str | Path = ".") -> str:
    """Experiment id for `name`, created with an explicit artifact location when tracking is local.

    The experiment is marked as a model-training one (EXPERIMENT_KIND_TAG), so the MLflow UI opens it on
    its runs and charts; an experiment whose kind someone already chose keeps that choice.
    """
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        if EXPERIMENT_KIND_TAG not in exp.tags:  # made before this tag was set, or by hand
            mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
        return exp.experiment_id
    local = not os.environ.get("MLFLOW_TRACKING_URI") or os.environ["MLFLOW_TRACKING_URI"].startswith(
        "sqlite"
    )
    return mlflow.create_experiment(
        name,
        artifact_location=artifact_root(root) if local else None,
        tags={EXPERIMENT_KIND_TAG: TRAINING_KIND},
    )


@contextlib.contextmanager
def stage_run(
    stage: str,
    experiment: str,
    enabled: bool = True,
    root: str | Path = ".",
    tags: Mapping[str, str] | None = None,
) -> Iterator[Tracker]:
    """An MLflow run for one stage (nested under $SISGAN_MLFLOW_PARENT_RUN_ID when set).

    Writes runs/<stage>.json with the run id so orchestration can link to it. Disabled, or mlflow not
    installed (the GPU machine): a no-op tracker.
    """
    if not enabled:
        yield Tracker()
        return
    try:
        import mlflow
    except ImportError:
        warnings.warn(
            "mlflow is not installed: this run is not tracked (set tracking.enabled: false).", stacklevel=2
        )
        yield Tracker()
        return
    mlflow.set_tracking_uri(tracking_uri(root))
    exp_id = ensure_experiment(mlflow, experiment, root)
    parent = os.environ.get(PARENT_RUN_ENV) or None
    with mlflow.start_run(
        experiment_id=exp_id, run_name=stage, parent_run_id=parent, nested=bool(parent)
    ) as run:
        tracker = MlflowTracker(mlflow, run)
        tracker.set_tags({"sisgan.stage": stage, **(tags or {})})
        record = {
            "stage": stage,
            "run_id": tracker.run_id,
            "experiment_id": exp_id,
            "tracking_uri": tracking_uri(root),
        }
        write_json(Path(root) / RUNS_DIR / f"{stage}.json", record)
        yield tracker


def add_to_run_record(stage: str, fields: Mapping[str, Any], root: str | Path = ".") -> None:
    """Add fields to runs/<stage>.json (e.g. the registered model, for the orchestration report)."""
    path = Path(root) / RUNS_DIR / f"{stage}.json"
    record = json.loads(path.read_text()) if path.is_file() else {"stage": stage}
    write_json(path, {**record, **fields})
