"""Check what a user sees in the MLflow UI and on the demo page, in headless Chromium; write the screenshots.

    make ui-check        # after `make repro`: reads mlflow.db, runs/*.json, models/ and data/shards/

Starts `mlflow server` on the project's tracking store and `sisgan demo` on models/ (both on free ports of
127.0.0.1, stopped at the end), then checks, failing with one line each:

1. the experiment opens in MLflow's model-training view (runs table and side bar, not the GenAI overview);
2. the train_gan run page shows the loss curves as charts and the sample grids as images;
3. the champion model version shows its description: the evaluation headline and links to the runs;
4. the demo page edits a test image by a typed sentence.

Writes docs/images/mlflow_run.png, mlflow_run_samples.png, mlflow_model_version.png and demo.png (palette
PNGs, about 100 KB each).
Needs Debian's chromium (`make browser`) and playwright (in requirements.lock).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("SISGAN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TRAINING_VIEW = "workflowType=machine_learning"  # MLflow 3.17's switch between the GenAI and training views
VIEWPORT = {"width": 1280, "height": 820}


class CheckFailed(Exception):
    pass


def check(ok: bool, message: str) -> None:
    if not ok:
        raise CheckFailed(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CheckFailed(f"{proc.args[:4]} exited with {proc.returncode} before answering {url}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=5):
                return
        time.sleep(0.5)
    raise CheckFailed(f"{url} did not answer within {seconds:.0f} s")


@contextlib.contextmanager
def background(cmd: list[str], ready_url: str, seconds: float = 180) -> Iterator[None]:
    """Run a server process until the block ends (SIGTERM, then SIGKILL)."""
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"ui_check_{cmd[2].replace('.', '_')}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(ready_url, proc, seconds)
            yield
        except CheckFailed as e:
            raise CheckFailed(f"{e} (log: {log_path})") from None
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def save_small(png: bytes, path: Path) -> None:
    """A palette PNG: screenshots of flat UIs lose nothing visible and shrink ~4x."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def close_assistant(page: Any) -> None:
    """MLflow 3.17 opens an assistant panel on first visit; it would cover a third of the screenshot."""
    button = page.get_by_role("button", name="Close", exact=True)
    if button.count():
        button.first.click()


# Section: the checks.


def check_experiment(page: Any, base: str, experiment_id: str, run_names: list[str]) -> None:
    page.goto(f"{base}/#/experiments/{experiment_id}?{TRAINING_VIEW}")
    page.get_by_text(run_names[0], exact=True).first.wait_for()
    nav = page.locator("body").inner_text()
    check("Training runs" not in nav and "Judges" not in nav, "the experiment opened in the GenAI view")
    for name in run_names:
        check(page.get_by_text(name, exact=True).count() > 0, f"run {name} is not listed in the experiment")


def preview_artifact(page: Any, base: str, experiment_id: str, run_id: str, name: str) -> None:
    """The run's Artifacts tab with `name` (an image) selected; waits until the preview has loaded."""
    page.goto(f"{base}/#/experiments/{experiment_id}/runs/{run_id}/artifacts?{TRAINING_VIEW}")
    close_assistant(page)
    page.get_by_text(name, exact=True).first.click()
    image = page.locator("img[src^='blob:']").first  # the preview: the file fetched, shown from memory
    image.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    page.wait_for_timeout(500)


def shot_run(page: Any, base: str, experiment_id: str, run_id: str, out: Path) -> None:
    page.goto(f"{base}/#/experiments/{experiment_id}/runs/{run_id}/model-metrics?{TRAINING_VIEW}")
    page.get_by_text("d_real", exact=True).first.wait_for()  # a loss curve's chart
    close_assistant(page)
    # The loss curves, and the image chart of the sample grids logged at every epoch (mlflow.log_image).
    page.get_by_placeholder("Search metric charts").fill("d_real|d_fake|g_adv|recon|swap|samples")
    for name in ("d_real", "g_adv", "swap", "samples"):
        page.get_by_text(name, exact=True).first.wait_for()
    page.wait_for_timeout(1500)  # let the charts finish drawing
    save_small(page.screenshot(), out)
    preview_artifact(page, base, experiment_id, run_id, "train_gan_samples.png")
    save_small(page.screenshot(), out.with_name(out.stem + "_samples.png"))


def check_eval_run(page: Any, base: str, experiment_id: str, run_id: str) -> None:
    page.goto(f"{base}/#/experiments/{experiment_id}/runs/{run_id}/model-metrics?{TRAINING_VIEW}")
    page.get_by_placeholder("Search metric charts").fill("eval_grid")
    page.get_by_text("eval_grid", exact=True).first.wait_for()  # its image chart
    preview_artifact(page, base, experiment_id, run_id, "eval_grid.png")


def shot_version(page: Any, base: str, name: str, version: str, primary: str, out: Path) -> None:
    page.goto(f"{base}/#/models/{name}/versions/{version}?{TRAINING_VIEW}")
    page.get_by_text("Alias decision:").first.wait_for()
    close_assistant(page)
    text = page.locator("body").inner_text()
    check(primary in text, f"the version's description does not show {primary}")
    links = page.locator("a[href*='/runs/']")
    check(links.count() >= 2, "the version's description links to no runs")
    save_small(page.screenshot(), out)


def shot_demo(page: Any, url: str, texts: list[str], out: Path) -> None:
    page.goto(url)
    page.locator("#examples button").first.wait_for()
    page.locator("#examples button").nth(3).click()
    page.fill("#texts", "\n".join(texts))
    page.click("#submit")
    page.locator(f"#results figure:nth-child({len(texts) + 1}) img").wait_for()
    error = page.locator("#error")
    check(error.is_hidden(), f"the demo page shows an error: {error.text_content()}")
    save_small(page.screenshot(full_page=True), out)


# Section: main.


def read_json(path: Path, hint: str) -> dict[str, Any]:
    if not path.is_file():
        raise CheckFailed(f"{path} not found; {hint}")
    return json.loads(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="folder for the screenshots")
    parser.add_argument("--model", default="models", help="model for the demo page (default: models/)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from sisgan.tracking import tracking_uri

    out = Path(args.out)
    train = read_json(Path("runs/train_gan.json"), "run `make repro` first")
    evaluate = read_json(Path("runs/evaluate.json"), "run `make repro` first")
    registered = read_json(Path("models/registered.json"), "run `make repro` first")
    mlflow_port, demo_port = free_port(), free_port()
    base, demo = f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{demo_port}/"
    mlflow_cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri()]
    mlflow_cmd += ["--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"]
    demo_cmd = [sys.executable, "-m", "sisgan.cli", "demo", "--model", args.model, "--port", str(demo_port)]
    env = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    os.environ.update(env)
    with (
        background(mlflow_cmd, f"{base}/health"),
        background(demo_cmd, f"{demo}api/info"),
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport=VIEWPORT).new_page()
        page.set_default_timeout(60_000)
        check_experiment(page, base, train["experiment_id"], ["train_gan", "evaluate", "register"])
        print("ok: the experiment opens in the model-training view")
        shot_run(page, base, train["experiment_id"], train["run_id"], out / "mlflow_run.png")
        print("ok: the train_gan run shows its loss curves and sample grids")
        check_eval_run(page, base, evaluate["experiment_id"], evaluate["run_id"])
        print("ok: the evaluate run shows the evaluation grid")
        primary = registered["primary"]["name"]
        version = registered["name"], registered["version"]
        shot_version(page, base, *version, primary, out / "mlflow_model_version.png")
        print("ok: the model version carries the evaluation headline and run links")
        texts = ["this bird has a red head and blue wings", "a yellow bird with a black beak"]
        shot_demo(page, demo, texts, out / "demo.png")
        print("ok: the demo page edits a test image")
        browser.close()


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as e:
        print(f"ui check failed: {e}", file=sys.stderr)
        sys.exit(1)
