"""Stage `register`: log the trained model as an MLflow pyfunc and register it as a new model version.

The version gets alias `challenger`; alias `champion` moves to it only when it beats the current champion
on the evaluation's primary metric (the first version becomes champion). The metric is stored as tags on
each version, so later comparisons read the registry alone and never depend on run lookups. The version's
description (shown on its page in the MLflow UI) holds the evaluation's headline and links to the runs of
the stages that made it.

Each version is also tagged with a SHA-256 of its weights (generator.pt + every file of models/text/):
weights the registry already holds are not registered again, whatever their new evaluation says; the
stage then records that version and leaves the aliases alone.

Reads models/gan/generator.pt, models/text/ and metrics/eval.json; writes models/registered.json.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from pipeline.common import cli, section, stage_params, write_json
from pipeline.summary import eval_summary
from sisgan.config import RegisterConfig, TrackingConfig
from sisgan.errors import ConfigError, DataError
from sisgan.tracking import RUNS_DIR, add_to_run_record, run_page

GENERATOR = Path("models/gan/generator.pt")
TEXT_DIR = Path("models/text")
EVAL_METRICS = Path("metrics/eval.json")
OUT = Path("models/registered.json")
CHAMPION, CHALLENGER = "champion", "challenger"
LINKED_STAGES = ("pretrain_text", "train_gan", "evaluate")  # their runs are linked from the description
# Model-version tags holding the primary metric.
TAG_NAME, TAG_VALUE, TAG_HIGHER = "sisgan.primary_metric", "sisgan.primary_value", "sisgan.higher_is_better"
TAG_WEIGHTS = "sisgan.weights_sha256"  # model-version tag: what weights the version holds


def weights_digest(generator: Path, text_dir: Path) -> str:
    """SHA-256 over generator.pt and every file of the text-model folder (names and bytes, in name order)."""
    h = hashlib.sha256()
    files = [("generator.pt", generator)]
    files += sorted(
        (f"text/{p.relative_to(text_dir).as_posix()}", p) for p in text_dir.rglob("*") if p.is_file()
    )
    for name, path in files:
        h.update(f"{name}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class Primary:
    """The evaluation's primary metric: what decides whether a version becomes champion."""

    name: str
    value: float
    higher_is_better: bool

    def tags(self) -> dict[str, str]:
        return {
            TAG_NAME: self.name,
            TAG_VALUE: repr(self.value),
            TAG_HIGHER: str(self.higher_is_better).lower(),
        }

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Primary | None:
        try:
            return cls(tags[TAG_NAME], float(tags[TAG_VALUE]), tags[TAG_HIGHER] == "true")
        except (KeyError, ValueError):
            return None  # a version registered by hand, or by an older pipeline


def read_primary(path: Path = EVAL_METRICS) -> Primary:
    """metrics/eval.json's `primary` entry: {"name": str, "value": float, "higher_is_better": bool}."""
    if not path.is_file():
        raise DataError(f"{path} not found; run the evaluate stage first (`dvc repro evaluate`).")
    try:
        p = json.loads(path.read_text())["primary"]
        ok = (
            isinstance(p["name"], str)
            and isinstance(p["value"], int | float)
            and not isinstance(p["value"], bool)
            and isinstance(p["higher_is_better"], bool)
        )
    except (json.JSONDecodeError, KeyError, TypeError):
        ok = False
    if not ok:
        raise DataError(
            f"{path} has no valid 'primary' entry ({{name: str, value: number, higher_is_better: bool}}); "
            "rerun the evaluate stage."
        )
    return Primary(p["name"], float(p["value"]), p["higher_is_better"])


# Section: the decision (pure).


@dataclasses.dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(
    new: Primary, champion: Primary | None, champion_version: str | None, min_delta: float
) -> Decision:
    """Does the new version take `champion`? Only when strictly better by more than min_delta."""
    if champion_version is None:
        return Decision(True, "no champion yet: the first version becomes champion")
    where = f"champion v{champion_version}"
    if not math.isfinite(new.value):
        return Decision(False, f"{new.name} = {new.value} is not a number; {where} stays")
    if champion is None:
        return Decision(False, f"{where} has no recorded primary metric, so it stays; move the alias by hand")
    if (champion.name, champion.higher_is_better) != (new.name, new.higher_is_better):
        return Decision(False, f"{where} was scored on {champion.name}, this version on {new.name}; it stays")
    gain = new.value - champion.value if new.higher_is_better else champion.value - new.value
    if gain > min_delta:
        return Decision(True, f"{new.name} {new.value:.4g} beats {where} ({champion.value:.4g})")
    return Decision(False, f"{new.name} {new.value:.4g} does not beat {where} ({champion.value:.4g})")


# Section: the version's description (pure).


def run_link(name: str, experiment_id: str, run_id: str) -> str:
    """A Markdown link to a run page; relative to the UI's address, so it works wherever the UI is served."""
    return f"[{name}]({run_page(experiment_id, run_id)})"


def stage_runs(root: str | Path = ".") -> dict[str, tuple[str, str]]:
    """stage -> (experiment id, run id) from runs/<stage>.json, for the stages that were tracked here."""
    out = {}
    for stage in LINKED_STAGES:
        path = Path(root) / RUNS_DIR / f"{stage}.json"
        try:
            record = json.loads(path.read_text())
            out[stage] = (str(record["experiment_id"]), str(record["run_id"]))
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            continue  # not run on this machine, or tracking was off
    return out


def describe(
    dataset: str,
    primary: Primary,
    headline: dict[str, float],
    decision: Decision,
    runs: dict[str, tuple[str, str]],
) -> str:
    """Markdown for the model version's description: the headline figures, the decision, the runs."""
    lines = [
        f"**{primary.name} = {primary.value:.4g}** on {dataset} (the primary metric; "
        f"{'higher' if primary.higher_is_better else 'lower'} is better).",
    ]
    if headline:
        lines += ["", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {v:.4g} |" for k, v in headline.items()]
    lines += ["", f"Alias decision: {decision.reason}."]
    if runs:
        lines += ["", "Runs: " + " · ".join(run_link(stage, *ids) for stage, ids in runs.items())]
    return "\n".join(lines)


# Section: the registry.


def current_champion(client: Any, name: str) -> tuple[str | None, Primary | None]:
    """(version, its primary metric) of the champion, or (None, None) when there is none yet."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":  # no such model, or no such alias
            return None, None
        raise
    return str(mv.version), Primary.from_tags(dict(mv.tags))


def version_with_weights(client: Any, name: str, digest: str) -> Any | None:
    """The registered version of `name` tagged with this weights digest (the oldest), or None."""
    query = f"name = '{name}' and tags.`{TAG_WEIGHTS}` = '{digest}'"
    found = client.search_model_versions(query)
    return min(found, key=lambda mv: int(mv.version)) if found else None


def _reused(client: Any, mv: Any, name: str, primary: Primary) -> dict[str, Any]:
    """models/registered.json for weights the registry already holds: that version, aliases untouched."""
    champion, champion_primary = current_champion(client, name)
    version = str(mv.version)
    aliases = sorted(getattr(mv, "aliases", []) or [])
    role = CHAMPION if champion == version else CHALLENGER
    return {
        "name": name,
        "version": version,
        "run_id": mv.run_id,
        "model_uri": f"models:/{name}/{version}",
        "logged_model_uri": mv.source,
        "decision": role,
        "reason": f"v{version} already holds these weights ({mv.tags[TAG_WEIGHTS][:12]}); no new version",
        "aliases": aliases,
        "primary": dataclasses.asdict(primary),
        "previous_champion": None
        if champion is None
        else {"version": champion, "value": champion_primary.value if champion_primary else None},
        "champion_version": champion,
        "reused": True,
    }


def register(
    generator: Path,
    text_dir: Path,
    primary: Primary,
    model_name: str,
    cfg: RegisterConfig,
    dataset: str,
    experiment: str,
    headline: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Log, register and (maybe) promote; returns the record written to models/registered.json."""
    import mlflow

    from sisgan.inference import write_bundle
    from sisgan.serving import log_pyfunc
    from sisgan.tracking import stage_run

    digest = weights_digest(generator, text_dir)
    with tempfile.TemporaryDirectory() as tmp, stage_run("register", experiment) as run:
        run.log_params({"dataset": dataset, "model_name": model_name, "register": cfg.to_dict()})
        client = mlflow.MlflowClient()
        existing = version_with_weights(client, model_name, digest)
        if existing is not None:
            run.set_tags({"sisgan.model": f"{model_name}/{existing.version}", "sisgan.decision": "unchanged"})
            return _reused(client, existing, model_name, primary)
        # MLflow metric names allow letters, digits and _-./ and spaces only.
        headline = headline or {}
        shown = {primary.name: primary.value, **headline}
        run.log_metrics({"eval." + re.sub(r"[^\w\-./ ]", "_", k): v for k, v in shown.items()})
        bundle = write_bundle(Path(tmp) / "bundle", generator, text_dir)
        info = log_pyfunc(bundle, model_metadata={"dataset": dataset, "primary_metric": primary.name})
        before, before_primary = current_champion(client, model_name)
        tags = {**primary.tags(), "sisgan.dataset": dataset, TAG_WEIGHTS: digest}
        mv = mlflow.register_model(info.model_uri, model_name, tags=tags)
        version = str(mv.version)
        client.set_registered_model_alias(model_name, CHALLENGER, version)
        decision = decide(primary, before_primary, before, cfg.min_delta)
        if decision.promote:
            client.set_registered_model_alias(model_name, CHAMPION, version)
        runs = {**stage_runs(), "register": (str(run.experiment_id), str(run.run_id))}
        client.update_model_version(
            model_name, version, description=describe(dataset, primary, headline, decision, runs)
        )
        role = CHAMPION if decision.promote else CHALLENGER
        run.set_tags({"sisgan.model": f"{model_name}/{version}", "sisgan.decision": role})
        before_value = before_primary.value if before_primary else None
        return {
            "name": model_name,
            "version": version,
            "run_id": run.run_id,
            "model_uri": f"models:/{model_name}/{version}",
            "logged_model_uri": info.model_uri,
            "decision": role,
            "reason": decision.reason,
            "aliases": [CHALLENGER, CHAMPION] if decision.promote else [CHALLENGER],
            "primary": dataclasses.asdict(primary),
            "previous_champion": None if before is None else {"version": before, "value": before_value},
            "champion_version": version if decision.promote else before,
            "reused": False,
        }


def check_inputs(generator: Path = GENERATOR, text_dir: Path = TEXT_DIR) -> None:
    if not generator.is_file():
        raise DataError(f"{generator} not found; train the model first (`dvc repro train_gan`).")
    if not text_dir.is_dir():
        raise DataError(f"{text_dir} not found; pretrain the text encoder first (`dvc repro pretrain_text`).")


@cli
def main() -> None:
    params = stage_params(__doc__.splitlines()[0])
    dataset = params["dataset"]
    cfg, tracking = section(params, RegisterConfig), section(params, TrackingConfig)
    if not tracking.enabled:
        raise ConfigError(
            "register needs MLflow, but tracking.enabled is false; set it to true in params.yaml."
        )
    check_inputs()
    primary = read_primary()
    headline = eval_summary(json.loads(EVAL_METRICS.read_text()))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per input-example check
    name = cfg.model_name or f"sisgan-{dataset}"
    experiment = tracking.experiment or f"sisgan-{dataset}"
    record = register(GENERATOR, TEXT_DIR, primary, name, cfg, dataset, experiment, headline)
    write_json(OUT, record)
    reg = {"name": name, "version": record["version"], "alias": record["decision"]}
    add_to_run_record("register", {"registered_model": reg})
    outcome = "unchanged" if record["reused"] else f"-> {record['decision']}"
    print(f"register: {name} v{record['version']} {outcome} ({record['reason']})")


if __name__ == "__main__":
    main()
