"""The benchmark scripts run end to end at toy sizes and write their JSON (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _run(module: str, *args: str, cwd) -> dict:  # noqa: ANN001
    out = cwd / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", module, *args, "--out", str(out)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


@pytest.mark.slow
def test_train_throughput_toy(tmp_path):
    result = _run(
        "benchmarks.train_throughput",
        "--width",
        "0.125",
        "--size",
        "16",
        "--batch",
        "8",
        "--iters",
        "2",
        "--warmup",
        "1",
        "--images",
        "32",
        "--workers",
        "0",
        "--ladder",
        cwd=tmp_path,
    )
    modes = {r["mode"]: r for r in result["rows"]}
    assert list(modes)[0] == "reference" and list(modes)[-1] == "real"
    # Each rung of the ladder turns exactly one more speed switch on (or drops the per-step host sync).
    rungs = [r["switches"] for r in result["rows"][1:]]
    for before, after in zip(rungs, rungs[1:], strict=False):
        assert sum(before[k] != after[k] for k in before) == 1, (before, after)
    for r in modes.values():
        assert r["images_per_s"] > 0 and r["gflop_per_image"] > 0 and 0 < r["peak_fraction"]
    # The reference runs G twice and D's encoder on the real batch twice: more work per image.
    assert modes["reference"]["gflop_per_image"] > modes["real"]["gflop_per_image"]
    assert "speedup" in modes["real"] and result["peak"]["tflops"] > 0


@pytest.mark.slow
def test_preprocess_throughput_toy(tmp_path):
    result = _run(
        "benchmarks.preprocess_throughput", "--images", "16", "--repeats", "1", "--workers", "1", cwd=tmp_path
    )
    assert result["rows"][0]["images"] == 16 and result["rows"][0]["images_per_s"] > 0
