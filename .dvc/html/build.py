"""Build plots.html: DVC's HTML page template with vega, vega-lite and vega-embed inlined (no CDN).

DVC's own page loads the three libraries from a CDN, so `dvc plots show` draws blank charts offline.
.dvc/config points `plots.html_template` at the page this script writes. The libraries come from their npm
packages at the exact versions pinned in package.json / package-lock.json:

    npm ci --prefix .dvc/html && python .dvc/html/build.py      # or: make plots-template

Writes plots.html and THIRD_PARTY_LICENSES.txt (the licence of every package the lock installs: the three
minified builds bundle their runtime dependencies) beside this file. Stdlib only.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULES = HERE / "node_modules"
# package -> its browser build (a UMD bundle that defines the global vega / vegaLite / vegaEmbed)
LIBRARIES = {
    "vega": "build/vega.min.js",
    "vega-lite": "build/vega-lite.min.js",
    "vega-embed": "build/vega-embed.min.js",
}
# DVC fills these by plain text replacement (dvc_render.html.HTML.embed). `{scripts}` is left out on purpose:
# it is where DVC would insert its CDN <script> tags.
PLACEHOLDERS = ("{plot_divs}", "{refresh_tag}", "{scripts}")
# The `vega` package ships no licence file; its package.json says BSD-3-Clause, and the text is the Vega
# project's (one repository, vega/vega), as shipped by its sibling packages such as vega-canvas.
LICENSE_FALLBACK = {"vega": "vega-canvas"}

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {{refresh_tag}}
    <title>DVC plots</title>
    <!-- {stamp}: inlined from their npm packages by .dvc/html/build.py, so the page draws with no network.
         Licences: .dvc/html/THIRD_PARTY_LICENSES.txt -->
{scripts}
    <style>
        body {{ font-family: sans-serif; }}
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def pinned() -> dict[str, str]:
    """package -> exact version from package.json (ranges are refused: the page must be reproducible)."""
    deps = json.loads((HERE / "package.json").read_text())["devDependencies"]
    for name in LIBRARIES:
        if not re.fullmatch(r"\d+\.\d+\.\d+", deps.get(name, "")):
            fail(f"package.json must pin {name} to an exact version (got {deps.get(name)!r}).")
    return {name: deps[name] for name in LIBRARIES}


def installed(name: str) -> dict:
    path = MODULES / name / "package.json"
    if not path.is_file():
        fail(f"{path} not found; run `npm ci --prefix {HERE.relative_to(Path.cwd())}` first.")
    return json.loads(path.read_text())


def inline_script(name: str, version: str, licence: str) -> str:
    code = (MODULES / name / LIBRARIES[name]).read_text(encoding="utf-8")
    code = re.sub(r"\n?//# sourceMappingURL=\S+\s*$", "", code)  # DevTools would fetch the map
    if re.search(r"</script", code, re.IGNORECASE):
        fail(f"{name}'s build contains '</script', which would end the inline script early.")
    for placeholder in PLACEHOLDERS:
        if placeholder in code:
            fail(f"{name}'s build contains {placeholder}, which DVC would replace inside the code.")
    banner = f"/*! {name} {version} | {licence} | see THIRD_PARTY_LICENSES.txt */"
    return f"    <script>{banner}\n{code}\n    </script>"


def licence_text(name: str) -> str:
    for folder in (name, LICENSE_FALLBACK.get(name)):
        if folder is None:
            continue
        for path in sorted((MODULES / folder).glob("*")):
            if re.match(r"(licen[cs]e|copying)", path.name, re.IGNORECASE) and path.is_file():
                return path.read_text(encoding="utf-8").strip()
    return "(no licence file in the package)"


def third_party() -> str:
    lock = json.loads((HERE / "package-lock.json").read_text())
    parts = [
        "Licences of the npm packages installed from .dvc/html/package-lock.json. plots.html inlines the",
        "browser builds of vega, vega-lite and vega-embed, which bundle their runtime dependencies.",
    ]
    for key, meta in sorted(lock["packages"].items()):
        if not key:
            continue
        name = key.split("node_modules/")[-1]
        parts += ["", "=" * 78, f"{name} {meta.get('version')} ({meta.get('license', 'licence not stated')})"]
        parts += ["=" * 78, licence_text(name)]
    return "\n".join(parts) + "\n"


def main() -> None:
    versions = pinned()
    scripts = []
    for name, version in versions.items():
        meta = installed(name)
        if meta["version"] != version:
            fail(f"node_modules has {name} {meta['version']}, package.json pins {version}; run `npm ci`.")
        scripts.append(inline_script(name, version, meta.get("license", "?")))
    stamp = ", ".join(f"{n} {v}" for n, v in versions.items())
    page = PAGE.format(stamp=stamp, scripts="\n".join(scripts))
    (HERE / "plots.html").write_text(page, encoding="utf-8")
    (HERE / "THIRD_PARTY_LICENSES.txt").write_text(third_party(), encoding="utf-8")
    print(f"wrote {HERE / 'plots.html'} ({len(page) // 1024} KiB: {stamp})")


if __name__ == "__main__":
    main()
