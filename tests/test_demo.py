"""`sisgan demo`: the application, its HTTP answers, the command, and the page driven in a real browser."""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import synth_shards
from PIL import Image
from tiny_bundle import CAPTIONS, IMAGE_SIZE, LOAD_SIZE, make_bundle, photo

from sisgan.demo import MAX_TEXTS, DemoApp, RequestError, load_examples, make_server


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def data_url(image: Image.Image) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()


def decode(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,"), url[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny model bundle and a tiny shard folder (test images with captions)."""
    from sisgan.config import SynthConfig

    root = tmp_path_factory.mktemp("demo")
    bundle = make_bundle(root / "bundle")
    cfg = SynthConfig(n_images=40, n_classes=10, test_classes=3, captions_per_image=4)
    shards = synth_shards(root / "shards", cfg, load_size=LOAD_SIZE)
    return bundle, shards


@pytest.fixture(scope="module")
def app(assets):
    from sisgan.inference import Manipulator

    bundle, shards = assets
    return DemoApp(Manipulator.load(bundle), "tiny", load_examples(shards, 4))


# Section: the application.


def test_examples_from_shards_and_from_a_folder(assets, tmp_path):
    _, shards = assets
    examples = load_examples(shards, 4)
    assert len(examples) == 4 and all(ex.captions for ex in examples)
    assert Image.open(io.BytesIO(examples[0].png)).size == (LOAD_SIZE, LOAD_SIZE)
    photo(30, 20).save(tmp_path / "b.png")
    photo(20, 20).save(tmp_path / "a.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    assert [ex.name for ex in load_examples(tmp_path)] == ["a.jpg", "b.png"]
    from sisgan.errors import DataError

    with pytest.raises(DataError, match="no such folder"):
        load_examples(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no .png"):
        load_examples(tmp_path / "empty")


def test_manipulate_returns_source_outputs_grid_and_unknown_words(app):
    texts = [CAPTIONS[0], "a bird with zorblax wings"]
    result = app.manipulate({"image": data_url(photo(60, 40)), "texts": texts})
    assert [o["text"] for o in result["outputs"]] == texts
    assert result["outputs"][0]["unknown"] == [] and result["outputs"][1]["unknown"] == ["zorblax"]
    source = decode(result["source"])
    assert source.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    for out in result["outputs"]:
        assert decode(out["image"]).shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    grid = decode(result["grid"])
    assert grid.shape[1] > 3 * IMAGE_SIZE  # source + two outputs side by side
    # An example image gives the same answer as uploading the same pixels.
    by_example = app.manipulate({"example": 1, "texts": [CAPTIONS[0]]})
    upload = app.manipulate({"image": base64.b64encode(app.example_png(1)).decode(), "texts": [CAPTIONS[0]]})
    assert by_example["outputs"][0]["image"] == upload["outputs"][0]["image"]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"texts": ["a red bird"]}, "choose a test image or upload one first"),
        ({"example": 0, "texts": []}, "type at least one description"),
        ({"example": 0, "texts": ["  ", ""]}, "type at least one description"),
        ({"example": 0, "texts": "a red bird"}, "'texts' must be a list"),
        ({"example": 0, "texts": ["a red bird"] * (MAX_TEXTS + 1)}, f"at most {MAX_TEXTS} at once"),
        ({"example": 0, "texts": ["red " * 100]}, "keep each under"),
        ({"example": 99, "texts": ["a red bird"]}, "no example image 99"),
        ({"example": "0", "texts": ["a red bird"]}, "'example' must be the number"),
        ({"image": "%%%", "texts": ["a red bird"]}, "not valid base64"),
        ({"image": base64.b64encode(b"plain text").decode(), "texts": ["a red bird"]}, "cannot read"),
        ({"image": "", "texts": ["a red bird"]}, "'image' must be an image file"),
    ],
)
def test_bad_requests_are_one_sentence(app, request_, message):
    with pytest.raises(RequestError, match=message):
        app.manipulate(request_)


# Section: HTTP.


@pytest.fixture(scope="module")
def server(app):
    srv = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def call(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes, str]:
    req = urllib.request.Request(
        url, data=body, headers=headers or {}, method="POST" if body is not None else "GET"
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read(), resp.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers["Content-Type"]


def test_http_routes_and_errors(server):
    status, body, kind = call(server + "/")
    assert status == 200 and kind.startswith("text/html") and b'id="submit"' in body
    assert b"http://" not in body and b"https://" not in body  # nothing loaded from another host
    status, body, _ = call(server + "/api/info")
    info = json.loads(body)
    assert status == 200 and info["model"]["image_size"] == IMAGE_SIZE and len(info["examples"]) == 4
    assert info["suggestions"]
    status, body, kind = call(server + "/examples/0.png")
    assert (
        status == 200 and kind == "image/png" and Image.open(io.BytesIO(body)).size == (LOAD_SIZE, LOAD_SIZE)
    )

    def post(payload: bytes) -> tuple[int, dict]:
        status, body, kind = call(server + "/api/manipulate", payload, {"Content-Type": "application/json"})
        assert kind == "application/json"
        return status, json.loads(body)

    status, answer = post(json.dumps({"example": 0, "texts": ["a red bird"]}).encode())
    assert status == 200 and len(answer["outputs"]) == 1
    assert post(b"{not json") == (400, {"error": "the request is not valid JSON."})
    status, answer = post(json.dumps({"example": 0, "texts": []}).encode())
    assert status == 400 and "description" in answer["error"]
    assert call(server + "/nothing")[0] == 404 and call(server + "/examples/7.png")[0] == 404
    assert call(server + "/api/other", b"{}")[0] == 404


def test_oversized_upload_is_refused_before_reading_it(server, monkeypatch):
    import sisgan.demo

    monkeypatch.setattr(sisgan.demo, "MAX_BODY", 1000)
    status, body, _ = call(server + "/api/manipulate", b"x" * 5000, {"Content-Type": "application/json"})
    assert status == 413 and "upload an image under" in json.loads(body)["error"]


# Section: the command.


def start_demo(*args: str, cwd: Path) -> tuple[subprocess.Popen, str]:
    """`sisgan demo ... --port 0`; returns the process and its URL once it says where it serves."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sisgan.cli", "demo", *args, "--port", "0"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        line = lines.get(timeout=120)
    except queue.Empty:
        proc.kill()
        raise AssertionError("sisgan demo printed nothing in 120 s") from None
    if not line.startswith("serving on http://127.0.0.1:"):
        proc.kill()
        raise AssertionError(f"unexpected first line {line!r}: {proc.stderr.read()}")
    return proc, line.split()[2].rstrip("/")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def demo_command(assets, tmp_path_factory):
    bundle, shards = assets
    proc, url = start_demo("--model", str(bundle), "--examples", str(shards), "--n-examples", "5",
                           cwd=tmp_path_factory.mktemp("cwd"))  # fmt: skip
    yield url
    stop(proc)


def test_command_serves_the_model_with_its_examples(demo_command):
    status, body, _ = call(demo_command + "/api/info")
    info = json.loads(body)
    assert status == 200 and len(info["examples"]) == 5 and info["model"]["vocabulary"] > 2


def test_command_errors_are_one_line(assets, tmp_path):
    bundle, _ = assets
    for args, expected in (
        (["--model", str(bundle), "--examples", str(tmp_path / "none")], "no such folder"),
        (["--model", str(tmp_path / "none")], "not found"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "sisgan.cli", "demo", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and expected in proc.stderr


# Section: the page in a real browser.


def figures(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#results figure",
        """figs => figs.map(f => ({
            src: f.querySelector('img').src,
            caption: f.querySelector('figcaption').textContent,
            unknown: (f.querySelector('.unknown') || {}).textContent || '',
            download: (f.querySelector('a.download') || {}).download || '',
        }))""",
    )


def test_page_upload_type_submit_download(page, demo_command, tmp_path):
    from playwright.sync_api import expect

    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(demo_command + "/")
    expect(page.locator("#model")).to_contain_text("vocabulary")
    expect(page.locator("#examples button")).to_have_count(5)

    # Upload an image of another size, type two sentences (one with an unknown word), submit.
    photo(64, 40, seed=3).save(tmp_path / "bird.png")
    page.set_input_files("#file", str(tmp_path / "bird.png"))
    expect(page.locator("#preview")).to_have_attribute("src", re.compile(r"^data:image/png"))
    page.fill("#texts", f"{CAPTIONS[0]}\na bird with zorblax wings")
    page.click("#submit")
    expect(page.locator("#results figure")).to_have_count(3)
    shown = figures(page)
    assert [f["caption"] for f in shown[1:]] == [CAPTIONS[0], "a bird with zorblax wings"]
    source = decode(shown[0]["src"]).astype(int)
    for fig in shown[1:]:
        out = decode(fig["src"]).astype(int)
        assert out.shape == source.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
        assert np.abs(out - source).mean() > 1.0  # an output, not the source shown twice
    assert shown[1]["unknown"] == "" and "zorblax" in shown[2]["unknown"]
    assert [f["download"] for f in shown[1:]] == ["sisgan-1.png", "sisgan-2.png"]

    with page.expect_download() as download:
        page.locator("#results figure:nth-child(2) a.download").click()
    saved = tmp_path / "downloaded.png"
    download.value.save_as(saved)
    np.testing.assert_array_equal(np.asarray(Image.open(saved).convert("RGB")), decode(shown[1]["src"]))
    assert page.locator("#grid").is_visible()
    assert page.locator("#error").is_hidden()

    # Pick a test image and a suggested caption instead.
    page.locator("#examples button").nth(2).click()
    page.fill("#texts", "")
    page.locator("#suggestions button").first.click()
    page.click("#submit")
    expect(page.locator("#results figure")).to_have_count(2)
    expect(page.locator("#submit")).to_be_enabled()
    assert figures(page)[1]["caption"] == page.locator("#suggestions button").first.text_content()

    assert all(u.startswith((demo_command, "data:")) for u in requests), requests  # nothing from elsewhere
    assert page.errors == []


def test_page_shows_errors(page, demo_command, tmp_path):
    from playwright.sync_api import expect

    page.goto(demo_command + "/")
    expect(page.locator("#model")).to_contain_text("vocabulary")
    page.click("#submit")
    expect(page.locator("#error")).to_contain_text("Choose a test image")

    (tmp_path / "fake.png").write_text("this is not an image")
    page.set_input_files("#file", str(tmp_path / "fake.png"))
    page.fill("#texts", "a red bird")
    page.click("#submit")
    expect(page.locator("#error")).to_contain_text("cannot read")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#results figure")).to_have_count(0)

    page.locator("#examples button").first.click()
    page.fill("#texts", "   ")
    page.click("#submit")
    expect(page.locator("#error")).to_contain_text("at least one description")
    assert page.errors == []


def test_page_full_size_box(page, demo_command, tmp_path):
    from playwright.sync_api import expect

    page.goto(demo_command + "/")
    expect(page.locator("#model")).to_contain_text("vocabulary")
    photo(64, 40, seed=7).save(tmp_path / "wide.png")
    page.set_input_files("#file", str(tmp_path / "wide.png"))
    page.fill("#texts", CAPTIONS[0])
    page.check("#full-size")
    page.click("#submit")
    expect(page.locator("#results figure")).to_have_count(2)
    shown = figures(page)
    assert decode(shown[0]["src"]).shape == decode(shown[1]["src"]).shape == (40, 64, 3)  # the photo's size
    assert shown[0]["caption"] == "source (the whole photo)"
    page.uncheck("#full-size")
    page.click("#submit")
    expect(page.locator("#results figure figcaption").first).to_have_text("source (as the model sees it)")
    assert decode(figures(page)[1]["src"]).shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert page.errors == []
