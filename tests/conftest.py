"""Shared fixtures: tiny configs so every test runs in seconds on a CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Tests never phone home and never touch the user's tracking state.
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


# The real photos (../shared/data/real/README.md): beside the repository in CI; SISGAN_REAL_DATA points
# elsewhere (e.g. from a second checkout). Tests that need them skip with one line where they are absent.
REAL_DATA = Path(os.environ.get("SISGAN_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))


def real_data(dataset: str) -> Path:
    folder = REAL_DATA / dataset
    if not folder.is_dir():
        pytest.skip(
            f"no real data at {folder} (../shared/data/real beside the repository, or SISGAN_REAL_DATA)"
        )
    return folder


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tiny_synth_cfg():
    from sisgan.config import SynthConfig

    return SynthConfig(n_images=40, n_classes=10, test_classes=3, captions_per_image=4)


@pytest.fixture
def synth_items(tiny_synth_cfg):
    """SourceItems of a tiny synth-birds (what preprocess reads after download)."""
    from sisgan.data import synth
    from sisgan.data.sources import synth_items

    return synth_items(synth.generate(tiny_synth_cfg, seed=3))


def synth_shards(out: Path, cfg, load_size: int, seed: int = 0) -> Path:  # noqa: ANN001
    """Generate synth-birds for a SynthConfig and write its shards to `out`."""
    from sisgan.data import synth
    from sisgan.data.shards import build_shards
    from sisgan.data.sources import synth_items

    build_shards(synth_items(synth.generate(cfg, seed)), out, dataset="synth-birds", load_size=load_size)
    return out


# Section: a throw-away copy of the project for stage and DVC tests.

TINY_PARAMS: dict = {
    "synth": {"n_images": 48, "n_classes": 8, "test_classes": 2, "captions_per_image": 4},
    "data": {"load_size": 20, "shard_rows": 16, "workers": 1},
    "text": {
        "epochs": 1,
        "image_size": 16,
        "cnn_width": 8,
        "batch_size": 8,
        "embed_dim": 16,
        "hidden_dim": 16,
    },
    "gan": {"image_size": 16, "width": 0.125, "batch_size": 8, "epochs": 2, "samples": 2},
    "evaluate": {"pairs_per_image": 1, "grid_rows": 2},
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def stage_env() -> dict[str, str]:
    """Environment for stage subprocesses: the test interpreter's bin first on PATH."""
    import sys

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Project:
    """A copy of the project's code and pipeline files with tiny params, and helpers to run it."""

    def __init__(self, dest: Path) -> None:
        import shutil

        import yaml

        self.root = dest
        dest.mkdir(parents=True)
        for name in ("sisgan", "pipeline", "flows"):
            shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("dvc.yaml", ".dvcignore", "params.checked"):
            shutil.copy(ROOT / name, dest / name)
        self.base = yaml.safe_load((ROOT / "params.yaml").read_text())
        self.set_params()

    def set_params(self, overrides: dict | None = None) -> dict:
        import yaml

        params = _merge(_merge(self.base, TINY_PARAMS), overrides or {})
        (self.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        return params

    def run(self, *args: str, check: bool = True):
        import subprocess

        proc = subprocess.run(
            args, cwd=self.root, env=stage_env(), capture_output=True, text=True, timeout=900
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def stage(self, name: str, check: bool = True):
        import sys

        return self.run(sys.executable, "-m", f"pipeline.{name}", check=check)

    def dvc(self, *args: str, check: bool = True):
        import sys

        return self.run(sys.executable, "-m", "dvc", *args, check=check)


@pytest.fixture
def project(tmp_path):
    """A copy of the project's code and pipeline files in tmp_path with tiny params (see Project)."""
    return Project(tmp_path / "proj")


# Section: a headless Chromium for the browser tests (Debian's package; `make test` installs it).

CHROMIUM = os.environ.get("SISGAN_CHROMIUM", "/usr/bin/chromium")
# Offline and quiet: without the background-networking flags Chromium tries Google's hosts at every start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """A Playwright Browser on the system Chromium. Skipped without one, except in CI (CI=true), where a
    missing browser fails: the browser tests must run there.

    Module-scoped, not session-scoped: while Playwright's sync API is open, the main thread has a running
    event loop, and Prefect's sync calls in later test modules would return coroutines."""
    import shutil

    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (make setup)"
    if missing is None and not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        missing = f"no Chromium at {CHROMIUM} (make browser installs Debian's chromium)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; CI must run the browser tests.")
        pytest.skip(missing)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page (own context) with short timeouts, so a broken page fails fast instead of hanging."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    pg = context.new_page()
    pg.errors = []  # uncaught exceptions in the page's scripts
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    context.close()
