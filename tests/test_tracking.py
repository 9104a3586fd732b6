"""MLflow experiments open in the model-training view; the names used for it are the installed UI's."""

from __future__ import annotations

from pathlib import Path

from sisgan.tracking import (
    EXPERIMENT_KIND_TAG,
    TRAINING_KIND,
    TRAINING_VIEW_QUERY,
    ensure_experiment,
    run_page,
)


def test_experiments_are_marked_as_model_training(tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()

    def kind(exp_id: str) -> str | None:
        return client.get_experiment(exp_id).tags.get(EXPERIMENT_KIND_TAG)

    new = ensure_experiment(mlflow, "sisgan-new", tmp_path)
    assert kind(new) == TRAINING_KIND == "custom_model_development"
    assert client.get_experiment(new).artifact_location == (tmp_path / "mlruns").as_uri()
    old = client.create_experiment("sisgan-old")  # made before the tag was set
    assert ensure_experiment(mlflow, "sisgan-old", tmp_path) == old and kind(old) == TRAINING_KIND
    client.set_experiment_tag(old, EXPERIMENT_KIND_TAG, "genai_development")  # a user's choice stays
    ensure_experiment(mlflow, "sisgan-old", tmp_path)
    assert kind(old) == "genai_development"


def test_the_names_are_those_of_the_installed_mlflow_ui():
    """The tag value and the view switch are read by MLflow's web UI: check them against its bundle, so an
    MLflow upgrade that renames them fails here rather than silently opening the GenAI view again."""
    import mlflow

    js = Path(mlflow.__file__).parent / "server/js/build/static/js"
    main = "".join(p.read_text(encoding="utf-8", errors="replace") for p in js.glob("main.*.js"))
    assert f'CUSTOM_MODEL_DEVELOPMENT="{TRAINING_KIND}"' in main
    assert f'"{EXPERIMENT_KIND_TAG}"' in main
    key, value = TRAINING_VIEW_QUERY.split("=")
    assert f'MACHINE_LEARNING="{value}"' in main and f'get("{key}")' in main
    assert run_page("3", "abc") == f"#/experiments/3/runs/abc?{TRAINING_VIEW_QUERY}"
