"""The MLflow pyfunc model: in-process predictions, what is logged with it, and the real scoring server."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tiny_bundle import IMAGE_SIZE, b64, make_bundle, make_models, photo

from sisgan.serving import decode_image_field

GOOD_TEXT = "a bird with a red head"


def decoded(value: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(value, validate=True)))
    assert (image.format, image.size) == ("PNG", (IMAGE_SIZE, IMAGE_SIZE))
    return image


# Section: decoding (no model needed).


def test_decode_accepts_data_urls_and_wrapped_base64():
    raw = b64(photo())
    wrapped = "\n".join(raw[i : i + 76] for i in range(0, len(raw), 76))  # what `base64` prints by default
    assert decode_image_field(f"data:image/png;base64,{raw}", 0) == decode_image_field(wrapped, 0)


@pytest.mark.parametrize("value", ["not base64 at all!", "", None, 3])
def test_decode_rejects_bad_fields(value):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="row 4: 'image'") as e:
        decode_image_field(value, 4)
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"


# Section: the logged model, in process.


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """(ModelInfo, loaded pyfunc) of the tiny bundle, logged to a throw-away store."""
    import mlflow

    from sisgan.serving import log_pyfunc

    root = tmp_path_factory.mktemp("serving")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
        with mlflow.start_run():
            info = log_pyfunc(make_bundle(root / "bundle"))
        yield info, mlflow.pyfunc.load_model(info.model_uri)


@pytest.mark.slow
def test_predict_returns_base64_pngs(logged):
    _, model = logged
    frame = pd.DataFrame(
        {
            "image": [b64(photo()), b64(photo(300, 200, "L"), "JPEG"), b64(photo(mode="RGBA"), "WEBP")],
            "text": [GOOD_TEXT, "a small green bird", "a qqq bird"],
        }  # fmt: skip
    )
    out = model.predict(frame)
    assert list(out.columns) == ["image", "warnings"] and len(out) == 3
    for value in out["image"]:
        decoded(value)
    assert out["warnings"].tolist()[:2] == [[], []]
    assert out["warnings"].iat[2] == ["words unknown to this model (read as <unk>): qqq"]


@pytest.mark.slow
def test_full_size_param_returns_the_photo_size(logged):
    from mlflow.exceptions import MlflowException

    _, model = logged
    frame = pd.DataFrame(
        {"image": [b64(photo(120, 90), "JPEG"), b64(photo(33, 47))], "text": [GOOD_TEXT] * 2}
    )
    out = model.predict(frame, params={"full_size": True})
    sizes = [Image.open(io.BytesIO(base64.b64decode(v))).size for v in out["image"]]
    assert sizes == [(120, 90), (33, 47)]
    for value in model.predict(frame, params={"full_size": False})["image"]:
        decoded(value)  # the model's size, as without params
    with pytest.raises(MlflowException, match="params: blend 'layers' needs a generator with a mask") as e:
        model.predict(frame, params={"full_size": True, "blend": "layers"})  # the tiny model is "direct"
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"


@pytest.mark.slow
def test_large_requests_are_split_into_chunks(logged, monkeypatch):
    import sisgan.serving

    _, model = logged
    texts = [GOOD_TEXT, "a small green bird", "a yellow body"]
    frame = pd.DataFrame({"image": [b64(photo(seed=i)) for i in range(3)], "text": texts})
    whole = model.predict(frame)["image"].tolist()
    monkeypatch.setattr(sisgan.serving, "MAX_BATCH", 2)
    chunked = model.predict(frame)["image"].tolist()
    assert len(chunked) == 3
    for a, b in zip(whole, chunked, strict=True):
        diff = np.asarray(decoded(a), np.int16) - np.asarray(decoded(b), np.int16)
        assert np.abs(diff).max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"image": "%%%not-base64%%%", "text": GOOD_TEXT}, "not valid base64"),
        ({"image": base64.b64encode(b"hello").decode(), "text": GOOD_TEXT}, "cannot read"),
        ({"image": "IMAGE"}, "text"),  # a missing field
        ({"image": "IMAGE", "text": "  "}, "'text' is empty"),
    ],
)
def test_predict_rejects_bad_records_as_invalid_parameters(logged, record, expected):
    from mlflow.exceptions import MlflowException

    _, model = logged
    record = {k: b64(photo()) if v == "IMAGE" else v for k, v in record.items()}
    with pytest.raises(MlflowException, match=expected) as e:
        model.predict(pd.DataFrame([record]))
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"  # the scoring server answers 400


@pytest.mark.slow
def test_logged_model_has_signature_example_pins_and_code(logged):
    from mlflow.artifacts import download_artifacts

    info, _ = logged
    assert [c.name for c in info.signature.inputs.inputs] == ["image", "text"]
    assert [c.name for c in info.signature.outputs.inputs] == ["image", "warnings"]
    assert {p.name: p.default for p in info.signature.params.params} == {
        "full_size": False,
        "blend": "change",
    }
    local = Path(download_artifacts(info.model_uri))
    requirements = (local / "requirements.txt").read_text().split()
    assert all("==" in r for r in requirements) and any(r.startswith("torch==") for r in requirements)
    assert (local / "input_example.json").is_file()
    assert (local / "code/sisgan/inference.py").is_file() and not list(local.rglob("__pycache__"))
    assert (local / "artifacts/bundle/generator.pt").is_file()
    # The pickle only names the class: the weights are files and no source code is embedded.
    pickled = (local / "python_model.pkl").read_bytes()
    assert b"sisgan.serving" in pickled and len(pickled) < 1000


# Section: the real scoring server.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM the server's process group (mlflow + its uvicorn child), SIGKILL what is left after grace."""
    pgid = proc.pid  # start_new_session: the group id is the leader's pid
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader so that only live members keep the group alive
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=grace)


@pytest.fixture
def server(tmp_path):
    """`mlflow models serve -m models:/sisgan-synth-birds@champion --env-manager local` on 127.0.0.1."""
    import requests

    from pipeline.register import Primary, register
    from sisgan.config import RegisterConfig

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, MLFLOW_DISABLE_TELEMETRY="true")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `uvicorn` of this venv
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        models = make_models(tmp_path / "models")
        args = (models / "gan/generator.pt", models / "text", Primary("acc", 0.5, True))
        register(*args, "sisgan-synth-birds", RegisterConfig(), "synth-birds", "sisgan-synth-birds")
    port = free_port()
    model = "models:/sisgan-synth-birds@champion"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", model,
           "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    log = (tmp_path / "server.log").open("w")
    # Its own process group: mlflow starts uvicorn as a child, and both must go when the test ends.
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, f"server exited:\n{(tmp_path / 'server.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, "server did not answer /ping in 300 s"
            try:
                if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(1)
        yield url, models
    finally:
        stop_group(proc)
        log.close()


@pytest.mark.slow
def test_scoring_server_answers_good_and_bad_requests(server):
    import requests

    from sisgan.inference import Manipulator

    server, models = server

    def invoke(records: list[dict]) -> requests.Response:
        return requests.post(f"{server}/invocations", json={"dataframe_records": records}, timeout=120)

    good = [
        {"image": b64(photo(120, 90), "JPEG"), "text": GOOD_TEXT},
        {"image": b64(photo()), "text": "green 🐦"},
    ]
    r = invoke(good)
    assert r.status_code == 200, r.text
    images = [np.asarray(decoded(p["image"]), np.int16) for p in r.json()["predictions"]]
    assert len(images) == 2
    # What the model did not read comes back with each row.
    warned = [p["warnings"] for p in r.json()["predictions"]]
    assert warned == [[], ["characters this model cannot read were ignored: 🐦"]]
    # The server runs the registered weights with the same pre/post-processing as the Python API.
    local = np.asarray(Manipulator.load(models).manipulate(base64.b64decode(good[0]["image"]), GOOD_TEXT))
    assert np.abs(images[0] - local).max() <= 1

    bad = {
        "not valid base64": [{"image": "@@not base64@@", "text": GOOD_TEXT}],
        "text": [{"image": b64(photo())}],  # missing field
        "'text' is empty": [{"image": b64(photo()), "text": ""}],
        "'text' must be a string": [{"image": b64(photo()), "text": 42}],
    }
    for expected, records in bad.items():
        r = invoke(records)
        assert 400 <= r.status_code < 500, (expected, r.status_code, r.text)
        assert expected in r.json()["message"]

    # The photo back at its own size, edited (the request's params).
    r = requests.post(
        f"{server}/invocations",
        json={"dataframe_records": good[:1], "params": {"full_size": True}},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    full = Image.open(io.BytesIO(base64.b64decode(r.json()["predictions"][0]["image"])))
    assert full.size == (120, 90)

    # Still serving after the errors.
    r = invoke(good[:1])
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1
    assert requests.get(f"{server}/ping", timeout=5).status_code == 200
