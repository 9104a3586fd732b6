"""`dvc plots show` draws its charts with no network: the page template in .dvc/html inlines vega."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import yaml
from conftest import ROOT

TEMPLATE = ROOT / ".dvc/html/plots.html"
LIBRARIES = ("vega", "vega-lite", "vega-embed")


def test_dvc_config_points_at_the_offline_template():
    config = (ROOT / ".dvc/config").read_text()
    match = re.search(r"^\s*html_template\s*=\s*(\S+)", config, re.MULTILINE)
    assert match and (ROOT / ".dvc" / match.group(1)).resolve() == TEMPLATE.resolve()


def test_template_inlines_the_pinned_libraries_and_loads_nothing():
    page = TEMPLATE.read_text()
    pins = json.loads((ROOT / ".dvc/html/package.json").read_text())["devDependencies"]
    lock = json.loads((ROOT / ".dvc/html/package-lock.json").read_text())["packages"]
    for name in LIBRARIES:
        assert re.fullmatch(r"\d+\.\d+\.\d+", pins[name]), f"{name} is not pinned exactly"
        assert lock[f"node_modules/{name}"]["version"] == pins[name]
        assert f"/*! {name} {pins[name]} |" in page, f"{name} {pins[name]} is not the inlined build"
    # DVC replaces {plot_divs} (required); {scripts} is where it would put its CDN <script> tags.
    assert "{plot_divs}" in page and "{scripts}" not in page
    markup = re.sub(r"<script>.*?</script>", "<script></script>", page, flags=re.DOTALL)  # without the code
    assert markup.count("<script>") == 3
    assert not re.search(r"\b(src|href)\s*=", markup), "the template loads a file"
    assert "sourceMappingURL" not in page
    licences = (ROOT / ".dvc/html/THIRD_PARTY_LICENSES.txt").read_text()
    for name in LIBRARIES:
        assert re.search(rf"^{re.escape(name)} {re.escape(pins[name])} \(", licences, re.MULTILINE)
    assert licences.count("Redistribution and use in source and binary forms") >= 3  # vega's BSD-3


def top_level_plots() -> list[str]:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    return [next(iter(p)) for p in spec["plots"]]


def test_dvc_plots_show_draws_every_chart_offline(page, tmp_path):
    """Render the project's plots (the CSVs committed in plots/) and open the page with every request that
    is not a local file refused: each chart must be drawn, i.e. its canvas holds non-blank pixels."""
    out = tmp_path / "dvc_plots"
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "-o", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    html = (out / "index.html").read_text()
    assert "cdn.jsdelivr" not in html and "/*! vega-embed" in html

    outside: list[str] = []

    def refuse(route):
        outside.append(route.request.url)
        route.abort()

    page.route(re.compile(r"^(?!file:|data:|blob:|about:).*"), refuse)
    page.goto((out / "index.html").as_uri())
    charts = page.locator(".vega-embed canvas")
    expected = len(top_level_plots())
    charts.nth(expected - 1).wait_for()
    assert charts.count() == expected
    drawn = page.eval_on_selector_all(
        ".vega-embed canvas",
        """cs => cs.map(c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let ink = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i] + d[i + 1] + d[i + 2] < 600) ink++;
            return ink;
        })""",
    )
    assert all(n > 500 for n in drawn), drawn  # axes, labels and lines, not an empty frame
    assert outside == [] and page.errors == [], (outside, page.errors)
