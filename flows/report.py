"""The pipeline's Markdown report: stages, overrides, metrics, MLflow runs and registered models.

Pure functions over plain data (no Prefect, no MLflow import): the flow's last task feeds them and
publishes the result as a Prefect artifact.

MLflow run ids are looked for defensively, in this order:
  1. runs/<stage>.json, the record `sisgan.tracking.stage_run` writes: {"run_id", "experiment_id",
     "tracking_uri", ...} (carried in each StageOutcome, so records from other machines count);
  2. any metrics/*.json with a `mlflow_run_id` or `run_id` key (top level or one level down), the stage
     taken from the file name (`metrics/<stage>_run.json` or `metrics/<stage>.json`).
A registered model is a `registered_model: {"name", "version", "alias"?}` mapping, or `model_name` +
`model_version` keys, in any of those files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from flows.outcome import StageOutcome
from sisgan.tracking import TRAINING_VIEW_QUERY, run_page

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"  # where `make mlflow-ui` serves a local tracking store


def mlflow_ui_base(tracking_uri: str | None, fallback: str | None) -> str | None:
    """A server URI is its own UI; a local store (sqlite, file) is browsed through `mlflow ui`."""
    if tracking_uri and tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return fallback.rstrip("/") if fallback else None


def _stage_of(path: str) -> str:
    stem = path.rsplit("/", 1)[-1].removesuffix(".json")
    return stem.removesuffix("_run").removesuffix("_mlflow")


def _candidates(doc: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield doc
    for value in doc.values():
        if isinstance(value, Mapping):
            yield value


def _run_in(doc: Any) -> dict[str, Any] | None:
    if not isinstance(doc, Mapping):
        return None
    for node in _candidates(doc):
        run_id = node.get("mlflow_run_id") or node.get("run_id")
        if isinstance(run_id, str) and RUN_ID.match(run_id):
            return {
                "run_id": run_id,
                "experiment_id": node.get("experiment_id"),
                "tracking_uri": node.get("tracking_uri"),
            }
    return None


def _model_in(doc: Any) -> dict[str, Any] | None:
    if not isinstance(doc, Mapping):
        return None
    for node in _candidates(doc):
        reg = node.get("registered_model")
        if isinstance(reg, Mapping) and reg.get("name"):
            return {"name": reg["name"], "version": reg.get("version"), "alias": reg.get("alias")}
        if node.get("model_name") and node.get("model_version") is not None:
            return {"name": node["model_name"], "version": node["model_version"], "alias": node.get("alias")}
    return None


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def collect_documents(outcomes: Mapping[str, StageOutcome], local: Mapping[str, Any]) -> dict[str, Any]:
    """path -> parsed JSON: this checkout's files, overlaid with what the outcomes carried (newer)."""
    docs = dict(local)
    for outcome in outcomes.values():
        for path, text in outcome.files.items():
            if path.endswith(".json") and (doc := _parse(text)) is not None:
                docs[path] = doc
    return docs


def find_runs(docs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """stage -> {run_id, experiment_id, tracking_uri}; runs/<stage>.json wins over metrics files."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(docs, key=lambda p: not p.startswith("runs/")):
        run = _run_in(docs[path])
        stage = (docs[path].get("stage") if isinstance(docs[path], Mapping) else None) or _stage_of(path)
        if run and stage not in found:
            found[stage] = run
    return found


def find_models(docs: Mapping[str, Any]) -> list[dict[str, Any]]:
    models = [m for path in sorted(docs) if (m := _model_in(docs[path]))]
    unique = {(m["name"], str(m["version"])): m for m in models}
    return list(unique.values())


# Section: Markdown.


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping | list):
        return f"`{json.dumps(value)}`"
    return str(value)


def _flat(doc: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in doc.items():
        if isinstance(value, Mapping):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _run_link(run: Mapping[str, Any], ui: str | None) -> str:
    run_id = run["run_id"]
    if ui and run.get("experiment_id") is not None:
        return f"[`{run_id[:8]}`]({ui}/{run_page(str(run['experiment_id']), run_id)})"
    return f"`runs:/{run_id}`"


def _model_link(model: Mapping[str, Any], ui: str | None) -> str:
    label = f"{model['name']} v{model['version']}" + (f" @{model['alias']}" if model.get("alias") else "")
    if ui and model.get("version") is not None:
        route = f"#/models/{model['name']}/versions/{model['version']}?{TRAINING_VIEW_QUERY}"
        return f"[{label}]({ui}/{route})"
    return f"`models:/{model['name']}/{model['version']}`"


def _stage_rows(outcomes: Mapping[str, StageOutcome], prefect_ui: str | None) -> list[str]:
    rows = ["| stage | result | where | time |", "| --- | --- | --- | --- |"]
    for o in outcomes.values():
        where = o.where
        if o.flow_run_id and prefect_ui:
            where = f"[{o.where}]({prefect_ui.rstrip('/')}/runs/flow-run/{o.flow_run_id})"
        rows.append(f"| {o.stage} | {o.status} | {where} | {o.seconds:.1f} s |")
    return rows


def _metric_rows(docs: Mapping[str, Any]) -> list[str]:
    rows: list[str] = []
    for path in sorted(p for p in docs if p.startswith("metrics/")):
        if not isinstance(docs[path], Mapping):
            continue
        rows += ["", f"**{path}**", "", "| metric | value |", "| --- | --- |"]
        rows += [f"| {k} | {_fmt(v)} |" for k, v in _flat(docs[path])]
    return rows or ["", "_No metrics/*.json yet._"]


def render_report(
    title: str,
    outcomes: Mapping[str, StageOutcome],
    docs: Mapping[str, Any],
    overrides: Mapping[str, Any],
    pipeline_run: Mapping[str, Any] | None = None,
    mlflow_ui: str | None = DEFAULT_MLFLOW_UI,
    prefect_ui: str | None = None,
) -> str:
    lines = [f"# {title}", "", *_stage_rows(outcomes, prefect_ui)]
    if overrides:
        lines += ["", "Overrides: " + ", ".join(f"`{k}` = `{json.dumps(v)}`" for k, v in overrides.items())]
    lines += ["", "## Metrics", *_metric_rows(docs)]
    runs, models = find_runs(docs), find_models(docs)
    lines += ["", "## MLflow"]
    if pipeline_run:
        ui = mlflow_ui_base(pipeline_run.get("tracking_uri"), mlflow_ui)
        lines += ["", f"Pipeline run: {_run_link(pipeline_run, ui)}"]
    if runs:
        lines += ["", "| stage | run |", "| --- | --- |"]
        lines += [
            f"| {s} | {_run_link(r, mlflow_ui_base(r.get('tracking_uri'), mlflow_ui))} |"
            for s, r in runs.items()
        ]
    if models:
        ui = mlflow_ui_base(next(iter(runs.values()), {}).get("tracking_uri"), mlflow_ui)
        lines += ["", "Registered models: " + ", ".join(_model_link(m, ui) for m in models)]
    if not (pipeline_run or runs or models):
        lines += ["", "_No MLflow runs recorded by these stages._"]
    return "\n".join(lines) + "\n"
