"""The Python API (`sisgan.Manipulator`) and the `sisgan` command, on a tiny random model bundle."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_bundle import IMAGE_SIZE, encoded, make_bundle, make_models, photo

import sisgan
from sisgan.cli import output_paths
from sisgan.errors import DataError
from sisgan.inference import Manipulator, UnknownWordsWarning

UNKNOWN_LINE = "warning: words unknown to this model (read as <unk>): qqq, zzyzx"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("cli") / "bundle")


@pytest.fixture(scope="module")
def manipulator(bundle) -> Manipulator:
    return sisgan.Manipulator.load(bundle)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # A throw-away tracking store: a models:/ URI must never touch the user's mlflow.db.
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}", "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.run(
        [sys.executable, "-m", "sisgan.cli", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


# Section: Python API.


def test_manipulate_returns_an_image_of_the_model_size(manipulator):
    out = manipulator.manipulate(photo(), "a bird with a red head")
    assert isinstance(out, Image.Image)
    assert (out.mode, out.size) == ("RGB", (IMAGE_SIZE, IMAGE_SIZE))


def test_batch_matches_single_calls(manipulator):
    images = [photo(seed=i) for i in range(3)]
    texts = ["a bird with a red head", "a yellow body", "a small green bird"]
    batch = manipulator.manipulate_batch(images, texts)
    single = [manipulator.manipulate(im, t) for im, t in zip(images, texts, strict=True)]
    for b, s in zip(batch, single, strict=True):
        assert np.abs(np.asarray(b, np.int16) - np.asarray(s, np.int16)).max() <= 1


def test_the_text_changes_the_output(manipulator):
    a = np.asarray(manipulator.manipulate(photo(), "a bird with a red head"))
    b = np.asarray(manipulator.manipulate(photo(), "a small green bird with white wings"))
    assert not np.array_equal(a, b)


def test_batch_length_mismatch_is_an_error(manipulator):
    with pytest.raises(DataError, match="one text per image"):
        manipulator.manipulate_batch([photo()], ["a", "b"])


@pytest.mark.parametrize(
    ("mode", "fmt", "size"),
    [("RGBA", "PNG", (40, 60)), ("P", "PNG", (33, 33)), ("L", "JPEG", (500, 375)), ("CMYK", "JPEG", (64, 48)),
     ("RGB", "WEBP", (1000, 20)), ("LA", "PNG", (17, 90))],
)  # fmt: skip
def test_any_size_and_mode(manipulator, mode, fmt, size):
    data = encoded(photo(*size, mode=mode), fmt)
    out = manipulator.manipulate(data, "a red bird")
    assert out.size == (IMAGE_SIZE, IMAGE_SIZE)


def test_loads_the_project_models_folder(tmp_path):
    m = Manipulator.load(make_models(tmp_path / "models"))
    assert m.info()["image_size"] == IMAGE_SIZE


def test_unknown_words_warn_with_their_names(manipulator):
    with pytest.warns(UnknownWordsWarning, match="qqq, zzyzx"):
        manipulator.manipulate(photo(), "a zzyzx bird with a qqq head")


def test_output_paths():
    assert output_paths(Path("o/out.png"), 1, False) == [Path("o/out.png")]
    assert output_paths(Path("o/out.png"), 2, False) == [Path("o/out-1.png"), Path("o/out-2.png")]
    assert output_paths(Path("o/out.png"), 3, True) == [Path("o/out.png")]


# Section: the command line.


def test_import_is_cheap():
    code = "import sys, sisgan.cli; sisgan.cli.build_parser(); assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_cli_one_text(bundle, tmp_path):
    photo(120, 80).save(tmp_path / "in.jpg")
    proc = run_cli("manipulate", "--model", str(bundle), "--image", "in.jpg", "--text", "a red bird",
                   "--out", "out/result.png", "--scale", "3", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["out/result.png"]
    assert Image.open(tmp_path / "out/result.png").size == (3 * IMAGE_SIZE, 3 * IMAGE_SIZE)
    assert "warning" not in proc.stderr


def test_cli_several_texts_and_unknown_words(bundle, tmp_path):
    photo(60, 90, mode="RGBA").save(tmp_path / "in.png")
    proc = run_cli("manipulate", "--model", str(bundle), "--image", "in.png", "--text", "a red bird",
                   "--text", "a zzyzx bird with a qqq head", "--out", "o.webp", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["o-1.webp", "o-2.webp"]
    assert [Image.open(tmp_path / p).format for p in ("o-1.webp", "o-2.webp")] == ["WEBP", "WEBP"]
    assert proc.stderr.strip().splitlines() == [UNKNOWN_LINE]


def test_cli_grid_puts_source_and_outputs_side_by_side(bundle, tmp_path):
    photo(50, 50).save(tmp_path / "in.png")
    proc = run_cli("manipulate", "--model", str(bundle), "--image", "in.png", "--text", "a red bird",
                   "--text", "a green bird", "--out", "grid.png", "--grid", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.glob("grid*")) == ["grid.png"]
    w, h = Image.open(tmp_path / "grid.png").size
    assert w >= 3 * 2 * IMAGE_SIZE > h / 2  # three tiles in a row, upscaled x2, plus a caption header


def test_cli_info(bundle, tmp_path):
    proc = run_cli("info", "--model", str(bundle), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert '"image_size": 16' in proc.stdout


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unreadable", "cannot read"),
        ("missing-image", "not found"),
        ("empty-text", "text is empty"),
        ("missing-model", "not found"),
        ("unknown-uri", "could not be resolved"),
        ("bad-extension", "unknown image extension"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(bundle, tmp_path, case, expected):
    (tmp_path / "bad.jpg").write_bytes(b"this is not a JPEG")
    photo().save(tmp_path / "in.png")
    args = {"model": str(bundle), "image": "in.png", "text": "a red bird", "out": "o.png"}
    args |= {
        "unreadable": {"image": "bad.jpg"},
        "missing-image": {"image": "nowhere.jpg"},
        "empty-text": {"text": "   "},
        "missing-model": {"model": "no/such/model"},
        "unknown-uri": {"model": "models:/sisgan-nothing@champion"},
        "bad-extension": {"out": "o.xyz"},
    }[case]
    proc = run_cli("manipulate", *(x for k, v in args.items() for x in (f"--{k}", v)), cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert not (tmp_path / "o.png").exists()


def test_console_script_is_installed(tmp_path):
    script = Path(sys.executable).parent / "sisgan"
    if not script.exists():
        pytest.skip("the package is not installed in this interpreter's environment (pip install -e .)")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "manipulate" in proc.stdout
