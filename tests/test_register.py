"""The `register` stage: champion/challenger decisions, the registry state and models/registered.json."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_bundle import IMAGE_SIZE, make_models, photo

from pipeline.register import Decision, Primary, decide, describe, read_primary, stage_runs
from sisgan.config import RegisterConfig
from sisgan.errors import ConfigError, DataError

ACC = "attribute_accuracy"


def write_eval(root: Path, value: float, name: str = ACC, higher_is_better: bool = True) -> None:
    """metrics/eval.json in the evaluate stage's contract: a `primary` entry plus metric groups."""
    path = root / "metrics" / "eval.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    primary = {"name": name, "value": value, "higher_is_better": higher_is_better}
    path.write_text(json.dumps({"primary": primary, "model": {name: value}, "identity": {name: 0.1}}))


@pytest.fixture
def tracking(tmp_path, monkeypatch) -> str:
    """A throw-away MLflow store; the cwd is tmp_path so runs/ and mlruns/ land there too."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


# Section: the decision rule.


def p(value: float, name: str = ACC, higher: bool = True) -> Primary:
    return Primary(name, value, higher)


@pytest.mark.parametrize(
    ("new", "champion", "version", "min_delta", "promote"),
    [
        (p(0.5), None, None, 0.0, True),  # first version
        (p(0.6), p(0.5), "1", 0.0, True),
        (p(0.4), p(0.5), "1", 0.0, False),
        (p(0.5), p(0.5), "1", 0.0, False),  # a tie keeps the champion
        (p(0.55), p(0.5), "1", 0.1, False),  # better, but within the noise margin
        (p(0.7), p(0.5), "1", 0.1, True),
        (p(1.0, "fid", False), p(2.0, "fid", False), "1", 0.0, True),  # lower is better
        (p(3.0, "fid", False), p(2.0, "fid", False), "1", 0.0, False),
        (p(0.9), p(0.5, "mp"), "1", 0.0, False),  # scored on another metric: not comparable
        (p(0.9), None, "1", 0.0, False),  # champion without recorded metric (set by hand)
        (p(math.nan), p(0.5), "1", 0.0, False),
    ],
)
def test_decide(new, champion, version, min_delta, promote):
    decision = decide(new, champion, version, min_delta)
    assert decision.promote is promote
    assert decision.reason


def test_primary_tags_round_trip():
    primary = Primary(ACC, 0.123456789, False)
    assert Primary.from_tags(primary.tags()) == primary
    assert Primary.from_tags({"other": "tag"}) is None


def test_read_primary(tmp_path):
    with pytest.raises(DataError, match="evaluate"):
        read_primary(tmp_path / "metrics" / "eval.json")
    write_eval(tmp_path, 0.75)
    assert read_primary(tmp_path / "metrics" / "eval.json") == Primary(ACC, 0.75, True)
    for bad in ({"primary": {"name": ACC, "value": True, "higher_is_better": True}}, {"model": {}}, [1]):
        (tmp_path / "metrics" / "eval.json").write_text(json.dumps(bad))
        with pytest.raises(DataError, match="no valid 'primary'"):
            read_primary(tmp_path / "metrics" / "eval.json")


def test_register_config_checks_the_name():
    assert RegisterConfig.from_dict({"model_name": "sisgan-cub.v2"}).model_name == "sisgan-cub.v2"
    with pytest.raises(ConfigError, match="model_name"):
        RegisterConfig.from_dict({"model_name": "has space"})
    with pytest.raises(ConfigError, match="unknown key"):
        RegisterConfig.from_dict({"alias": "x"})


def test_description_has_the_headline_the_decision_and_run_links(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "evaluate.json").write_text(json.dumps({"run_id": "r-eval", "experiment_id": "4"}))
    (runs / "train_gan.json").write_text("{broken")  # unreadable records are left out, not an error
    found = stage_runs(tmp_path)
    assert found == {"evaluate": ("4", "r-eval")}
    text = describe(
        "synth-birds",
        Primary("edit_score", 0.46481, True),
        {"edit_score": 0.4648, "attr_acc": 0.5857},
        Decision(True, "no champion yet: the first version becomes champion"),
        {**found, "register": ("4", "r-reg")},
    )
    assert text.startswith("**edit_score = 0.4648** on synth-birds")
    assert "| attr_acc | 0.5857 |" in text and "Alias decision: no champion yet" in text
    view = "?workflowType=machine_learning"
    links = f"[evaluate](#/experiments/4/runs/r-eval{view}) · [register](#/experiments/4/runs/r-reg{view})"
    assert links in text
    assert "| metric |" not in describe("cub", Primary("mp", 0.3, True), {}, Decision(False, "x"), {})


# Section: against a real (temporary) registry.


@pytest.mark.slow
def test_champion_moves_only_to_a_better_version(tracking, tmp_path):
    import mlflow

    from pipeline.register import register
    from sisgan.inference import Manipulator

    cfg, name = RegisterConfig(), "sisgan-test"

    def version(value: float) -> dict:
        models = make_models(tmp_path / f"models-{value}", seed=int(value * 10))  # new weights each time
        args = (models / "gan/generator.pt", models / "text", Primary(ACC, value, True), name, cfg)
        return register(*args, "synth-birds", "sisgan-test")

    def alias(a: str) -> str:
        return str(mlflow.MlflowClient().get_model_version_by_alias(name, a).version)

    first = version(0.5)
    assert (first["version"], first["decision"], first["previous_champion"]) == ("1", "champion", None)
    assert (alias("champion"), alias("challenger")) == ("1", "1")

    worse = version(0.4)
    assert (worse["version"], worse["decision"]) == ("2", "challenger")
    assert worse["previous_champion"] == {"version": "1", "value": 0.5}
    assert (alias("champion"), alias("challenger")) == ("1", "2")

    better = version(0.7)
    assert (better["decision"], better["champion_version"]) == ("champion", "3")
    assert (alias("champion"), alias("challenger")) == ("3", "3")

    # The metric lives on the version itself, and the run logged the model it registered.
    mv = mlflow.MlflowClient().get_model_version(name, "2")
    assert Primary.from_tags(dict(mv.tags)) == Primary(ACC, 0.4, True)
    assert mv.run_id == worse["run_id"]
    # Its description, shown on the version's page: the headline, the decision, a link to its run.
    assert mv.description.startswith(f"**{ACC} = 0.4**")
    assert "does not beat champion v1" in mv.description
    experiment = mlflow.get_run(mv.run_id).info.experiment_id
    assert f"[register](#/experiments/{experiment}/runs/{mv.run_id}" in mv.description
    assert Manipulator.load(f"models:/{name}@champion").manipulate(photo(), "a red bird").size == (
        IMAGE_SIZE,
        IMAGE_SIZE,
    )


def stage_env(tracking_uri: str) -> dict[str, str]:
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_DISABLE_TELEMETRY="true")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.slow
def test_stage_writes_registered_json_and_the_cli_serves_the_champion(project, tmp_path):
    uri = f"sqlite:///{tmp_path / 'registry.db'}"
    env = stage_env(uri)

    def stage() -> dict:
        cmd = [sys.executable, "-m", "pipeline.register"]
        proc = subprocess.run(cmd, cwd=project.root, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1].startswith("register: sisgan-synth-birds v")
        return json.loads((project.root / "models/registered.json").read_text())

    make_models(project.root / "models")
    write_eval(project.root, 0.6)
    first = stage()
    run = json.loads((project.root / "runs/register.json").read_text())
    assert first["name"] == "sisgan-synth-birds" and first["version"] == "1"
    assert first["run_id"] == run["run_id"]
    assert first["model_uri"] == "models:/sisgan-synth-birds/1"
    assert first["decision"] == "champion" and first["aliases"] == ["challenger", "champion"]
    assert first["primary"] == {"name": ACC, "value": 0.6, "higher_is_better": True}

    make_models(project.root / "models", seed=1)  # a retrained model
    write_eval(project.root, 0.3)
    second = stage()
    assert (second["version"], second["decision"], second["champion_version"]) == ("2", "challenger", "1")
    assert second["previous_champion"] == {"version": "1", "value": 0.6}
    reg = json.loads((project.root / "runs/register.json").read_text())["registered_model"]
    assert reg == {"name": "sisgan-synth-birds", "version": "2", "alias": "challenger"}
    assert "does not beat champion v1" in second["reason"]

    # `sisgan manipulate` with the registry URI of the champion.
    photo(80, 60).save(tmp_path / "in.jpg")
    model = "models:/sisgan-synth-birds@champion"
    args = ["--model", model, "--image", "in.jpg", "--text", "a red bird", "--out", "o.png"]
    cmd = [sys.executable, "-m", "sisgan.cli", "manipulate", *args]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == ""  # no MLflow progress bars or INFO lines around the result


@pytest.mark.slow
def test_weights_the_registry_holds_are_not_registered_again(tracking, tmp_path):
    """Re-evaluating an unchanged model (same files, another metric value) gives no new version."""
    import mlflow

    from pipeline.register import TAG_WEIGHTS, register, weights_digest

    cfg, name = RegisterConfig(), "sisgan-test"
    models = make_models(tmp_path / "models")
    args = (models / "gan/generator.pt", models / "text")
    first = register(*args, Primary(ACC, 0.5, True), name, cfg, "synth-birds", "sisgan-test")
    again = register(*args, Primary(ACC, 0.9, True), name, cfg, "synth-birds", "sisgan-test")
    assert (first["version"], first["reused"]) == ("1", False)
    assert (again["version"], again["reused"], again["decision"]) == ("1", True, "champion")
    assert "already holds these weights" in again["reason"]
    client = mlflow.MlflowClient()
    assert [str(mv.version) for mv in client.search_model_versions(f"name = '{name}'")] == ["1"]
    assert client.get_model_version(name, "1").tags[TAG_WEIGHTS] == weights_digest(*args)
    # Any changed file is other weights: a new version.
    (models / "text/vocab.json").write_text((models / "text/vocab.json").read_text().replace("red", "rex"))
    changed = register(*args, Primary(ACC, 0.4, True), name, cfg, "synth-birds", "sisgan-test")
    assert (changed["version"], changed["reused"], changed["decision"]) == ("2", False, "challenger")


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("nothing", "models/gan/generator.pt not found"),
        ("no-eval", "metrics/eval.json not found"),
        ("tracking-off", "tracking.enabled is false"),
    ],
)
def test_stage_errors_are_one_line(project, tmp_path, setup, expected):
    if setup != "nothing":
        make_models(project.root / "models")
    if setup == "tracking-off":
        project.set_params({"tracking": {"enabled": False}})
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.register"],
        cwd=project.root,
        env=stage_env(f"sqlite:///{tmp_path / 'registry.db'}"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
    assert not (project.root / "models/registered.json").exists()
