"""Nothing lost, nothing unbounded (issue 20): damaged model files, huge images, unwritable outputs,
text the model cannot read, and early one-line errors. On tiny models and in-process where possible."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_bundle import b64, damage, encoded, huge_png, make_bundle, make_models, photo

from sisgan.errors import ConfigError, DataError

LONG_TEXT = " ".join(["a red bird"] * 20)  # 60 words, over the default text.max_words = 50


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("robust") / "bundle")


@pytest.fixture
def manipulator(bundle):
    from sisgan.inference import Manipulator

    return Manipulator.load(bundle)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}
    cmd = [sys.executable, "-m", "sisgan.cli", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


# Section: damaged or unsafe model files.

DAMAGES = ["trap", "truncated", "empty", "garbage"]
MODEL_FILES = [(n, h) for n in ("gan/generator.pt", "text/weights.pt") for h in DAMAGES]
MODEL_FILES += [("text/vocab.json", h) for h in DAMAGES if h != "trap"]  # JSON holds no pickle


@pytest.mark.parametrize(("name", "how"), MODEL_FILES)
def test_a_damaged_model_file_is_one_error_naming_it(tmp_path, name, how):
    from sisgan.inference import Manipulator

    models = make_models(tmp_path / "models")
    marker = tmp_path / "code-ran"
    damage(models / name, how, marker)
    with pytest.raises(DataError) as e:
        Manipulator.load(models)
    message = str(e.value)
    assert str(models / name) in message and "\n" not in message
    assert "weights_only" not in message and "delete it" not in message
    expected = {"trap": "not a safe weights file", "empty": "empty (0 bytes)", "truncated": "not a valid"}
    expected["garbage"] = "not a valid" if name.endswith(".json") else "not a weights file"
    assert expected[how] in message
    assert "dvc checkout models/" in message  # the project's models/ folder: DVC restores it
    assert not marker.exists(), "the pickled payload ran"


def test_the_cli_reports_a_booby_trapped_generator_in_one_line(tmp_path):
    models = make_models(tmp_path / "models")
    damage(models / "gan/generator.pt", "trap", tmp_path / "code-ran")
    photo().save(tmp_path / "in.png")
    args = ("--model", "models", "--image", "in.png", "--text", "a red bird", "--out", "o.png")
    line = one_error_line(run_cli("manipulate", *args, cwd=tmp_path))
    assert "models/gan/generator.pt is not a safe weights file" in line and "weights_only" not in line
    assert not (tmp_path / "code-ran").exists() and not (tmp_path / "o.png").exists()


def test_a_damaged_bundle_names_the_file_and_no_dvc_command(bundle, tmp_path):
    from sisgan.inference import Manipulator

    copy = shutil.copytree(bundle, tmp_path / "bundle")
    damage(copy / "generator.pt", "empty")
    with pytest.raises(DataError, match=r"bundle/generator.pt is empty .* replace the model folder"):
        Manipulator.load(copy)


@pytest.mark.parametrize("how", ["trap", "truncated", "empty"])
def test_a_damaged_checkpoint_says_to_train_from_scratch(tmp_path, how):
    from sisgan.train import checkpoint

    checkpoint.save(tmp_path / "gan.pt", {"epoch": 1})
    damage(tmp_path / "gan.pt", how, tmp_path / "code-ran")
    with pytest.raises(DataError, match=r"checkpoint .*gan\.pt .*delete it to train from scratch"):
        checkpoint.load(tmp_path / "gan.pt")
    assert not (tmp_path / "code-ran").exists()


def test_the_pyfunc_model_reports_damaged_artefacts(bundle, tmp_path):
    from types import SimpleNamespace

    from sisgan.serving import BUNDLE_KEY, SisganModel

    copy = shutil.copytree(bundle, tmp_path / "bundle")
    damage(copy / "text/weights.pt", "truncated")
    with pytest.raises(DataError, match=r"text/weights.pt is not a valid weights file"):
        SisganModel().load_context(SimpleNamespace(artifacts={BUNDLE_KEY: str(copy)}))


def test_damaged_caption_features_are_one_error(tmp_path):
    import numpy as np

    from sisgan.text.model import load_features, save_features

    save_features(tmp_path / "f.npz", ["a", "b"], np.zeros((2, 1, 4), np.float32), np.ones(2, np.int64))
    damage(tmp_path / "f.npz", "truncated")
    with pytest.raises(DataError, match="rerun `dvc repro pretrain_text`"):
        load_features(tmp_path / "f.npz")


# Section: images too large to decode.


def test_a_huge_image_is_refused_from_its_header(manipulator, monkeypatch):
    from PIL import ImageFile

    from sisgan.inference import ImageTooLargeError

    def no_decoding(self) -> None:
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageTooLargeError) as e:
        manipulator.manipulate(huge_png(), "a red bird")
    assert "13000x13000 = 169,000,000 pixels, over the limit of 50,000,000 pixels (max_pixels)" in str(
        e.value
    )


def test_the_pixel_limit_is_a_knob(bundle):
    from sisgan.inference import ImageTooLargeError, Manipulator

    small = Manipulator.load(bundle, max_pixels=1000)
    with pytest.raises(ImageTooLargeError, match="over the limit of 1,000 pixels"):
        small.manipulate(encoded(photo(50, 30)), "a red bird")  # 1,500 pixels
    assert small.manipulate(encoded(photo(30, 30)), "a red bird").size == (16, 16)


def test_the_cli_refuses_a_huge_image_and_names_its_option(bundle, tmp_path):
    (tmp_path / "big.png").write_bytes(huge_png())
    args = (
        "manipulate",
        "--model",
        str(bundle),
        "--image",
        "big.png",
        "--text",
        "a red bird",
        "--out",
        "o.png",
    )
    line = one_error_line(run_cli(*args, cwd=tmp_path))
    assert "image big.png is 13000x13000" in line and "(--max-pixels)" in line
    assert not (tmp_path / "o.png").exists()
    # The option sets the limit: 1,500 pixels pass by default and not under --max-pixels 1000.
    photo(50, 30).save(tmp_path / "small.png")
    small = (
        "manipulate",
        "--model",
        str(bundle),
        "--image",
        "small.png",
        "--text",
        "a red bird",
        "--out",
        "o.png",
    )
    line = one_error_line(run_cli(*small, "--max-pixels", "1000", cwd=tmp_path))
    assert "image small.png is 50x30 = 1,500 pixels, over the limit of 1,000 pixels (--max-pixels)" in line
    assert run_cli(*small, cwd=tmp_path).returncode == 0


def test_the_server_answers_a_huge_image_with_a_400_naming_its_setting(manipulator, monkeypatch):
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from sisgan.serving import SisganModel

    model = SisganModel()
    model.manipulator = manipulator
    import base64

    frame = pd.DataFrame({"image": [base64.b64encode(huge_png()).decode()], "text": ["a red bird"]})
    with pytest.raises(
        MlflowException, match=r"row 0: the given image is 13000x13000 .*SISGAN_MAX_PIXELS"
    ) as e:
        model.predict(None, frame)
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"


def test_the_server_reads_its_pixel_limit_from_the_environment(monkeypatch):
    from sisgan.serving import max_pixels_from_env

    monkeypatch.setenv("SISGAN_MAX_PIXELS", "1_000_000")
    assert max_pixels_from_env() == 1_000_000
    monkeypatch.setenv("SISGAN_MAX_PIXELS", "lots")
    with pytest.raises(ConfigError, match="SISGAN_MAX_PIXELS"):
        max_pixels_from_env()


# Section: outputs that cannot be written.


def test_an_out_under_a_file_is_refused_before_the_model_loads(tmp_path):
    (tmp_path / "afile").write_text("x")
    photo().save(tmp_path / "in.png")
    # No such model: the --out error comes first, so it was checked before the model was looked for.
    args = ("--model", "no/such/model", "--image", "in.png", "--text", "a red bird", "--out", "afile/o.png")
    line = one_error_line(run_cli("manipulate", *args, cwd=tmp_path))
    assert "--out afile/o.png" in line and "is a file, not a folder" in line


def _unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    if sys.platform.startswith("linux") and Path("/sys/kernel").is_dir():
        return Path("/sys/kernel")  # refuses new files even to root
    pytest.skip("no folder refuses writes to root here")


def test_an_unwritable_out_folder_is_refused_before_the_model_loads(tmp_path):
    folder = _unwritable_folder(tmp_path)
    photo().save(tmp_path / "in.png")
    out = str(folder / "o.png")
    args = ("--model", "no/such/model", "--image", "in.png", "--text", "a red bird", "--out", out)
    line = one_error_line(run_cli("manipulate", *args, cwd=tmp_path))
    assert f"--out {out}: cannot write in {folder}" in line


def test_a_full_disk_leaves_no_image_and_one_line(bundle, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from sisgan import cli

    def full_disk(self, fp, format=None, **params) -> None:
        Path(fp).write_bytes(b"\x89PNG")  # part of the file, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    photo().save(tmp_path / "in.png")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(SystemExit) as e:
        cli.main(
            [
                "manipulate",
                "--model",
                str(bundle),
                "--image",
                "in.png",
                "--text",
                "a red bird",
                "--out",
                "o.png",
            ]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: --out o.png: cannot write o.png (No space left on device); no partial file was left."
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]  # no zero-byte or temporary file


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        ("d", "--out d is a folder; give a file name like d/out.png."),
        ("noext", "--out noext has no image extension"),
    ],
)
def test_out_names_that_are_not_image_files(bundle, tmp_path, out, expected):
    (tmp_path / "d").mkdir()
    photo().save(tmp_path / "in.png")
    args = ("manipulate", "--model", str(bundle), "--image", "in.png", "--text", "a red bird", "--out", out)
    assert expected in one_error_line(run_cli(*args, cwd=tmp_path))


# Section: text the model cannot read.


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("🐦🐦 鸟", "the text has no word this model can read (🐦 鸟)"),
        ("a red bird 红", "characters this model cannot read were ignored: 红"),
        (LONG_TEXT, "the text has 60 words; this model reads the first 50 (text.max_words)"),
    ],
)
def test_text_the_model_cannot_read_is_a_warning(manipulator, text, expected):
    from sisgan.inference import IgnoredTextWarning

    with pytest.warns(IgnoredTextWarning, match=expected.replace("(", r"\(").replace(")", r"\)")):
        manipulator.manipulate(photo(), text)


def test_readable_text_gives_no_warning(manipulator):
    assert manipulator.text_warnings("A bírd, with a RED head! (and blue wings)") == []


def test_the_cli_says_what_it_ignored(bundle, tmp_path):
    photo().save(tmp_path / "in.png")
    args = ("manipulate", "--model", str(bundle), "--image", "in.png", "--out", "o.png")
    proc = run_cli(*args, "--text", "🐦🐦", "--text", LONG_TEXT, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("warning: ") for line in lines)
    assert "no word this model can read (🐦)" in lines[0] and "reads the first 50" in lines[1]


def test_the_server_answers_with_the_warnings_of_each_row(manipulator):
    import pandas as pd

    from sisgan.serving import SisganModel

    model = SisganModel()
    model.manipulator = manipulator
    frame = pd.DataFrame({"image": [b64(photo())] * 3, "text": ["a red bird", "🐦", LONG_TEXT]})
    out = model.predict(None, frame)
    assert list(out.columns) == ["image", "warnings"]
    first, emoji, long = out["warnings"].tolist()
    assert first == [] and "no word this model can read (🐦)" in emoji[0] and "text.max_words" in long[0]


# Section: messages.


@pytest.mark.parametrize(("value", "shown"), [(42, "got 42"), (None, "got null"), (["a"], "got ['a']")])
def test_the_server_says_text_must_be_a_string(manipulator, value, shown):
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from sisgan.serving import SisganModel

    model = SisganModel()
    model.manipulator = manipulator
    frame = pd.DataFrame({"image": [b64(photo())], "text": [value]})
    with pytest.raises(MlflowException, match=f"row 0: 'text' must be a string .*{shown.replace('[', '.')}"):
        model.predict(None, frame)


@pytest.mark.parametrize(("text", "value"), [("1e-3", 1e-3), ("2E-4", 2e-4), ("+5e+1", 50.0)])
def test_numbers_yaml_reads_as_text_are_numbers(tmp_path, text, value):
    """PyYAML (YAML 1.1) reads 1e-3 as a string; DVC (YAML 1.2) reads it as a number: accept it."""
    from pipeline.common import stage_params
    from sisgan.config import GANConfig

    (tmp_path / "params.yaml").write_text((Path(__file__).parents[1] / "params.yaml").read_text())
    params = stage_params("test", ["--params", str(tmp_path / "params.yaml"), "--set", f"gan.lr={text}"])
    assert GANConfig.from_dict(params["gan"]).lr == pytest.approx(value)
    with pytest.raises(ConfigError, match="gan.lr must be a number, got '1e'"):  # text is still text
        GANConfig.from_dict({"lr": "1e"})


def test_a_crop_larger_than_the_stored_images_is_refused_before_any_work(project):
    """No shards exist at all: the stage must reject the param before it looks for them."""
    project.set_params({"gan": {"image_size": 32}})  # data.load_size is 20 in the tiny params
    proc = project.stage("train_gan", check=False)
    line = one_error_line(proc)
    assert "gan.image_size = 32 is larger than the stored images (data.load_size = 20)" in line
