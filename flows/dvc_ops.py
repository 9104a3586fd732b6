"""What the flows ask DVC: the stage graph of dvc.yaml, dvc.lock entries, remotes (no Prefect here).

The stage list always comes from the checkout's dvc.yaml, so the flows need no change when a stage is
added. Stage outputs travel between machines through a DVC remote; what the remote cannot carry (the
dvc.lock entry that names the outputs' hashes, and small outputs declared `cache: false`, such as
metrics) travels with the flow as a StageOutcome.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from sisgan.errors import ConfigError
from sisgan.io import write_text

LOCK_FILE = "dvc.lock"
FLOW_REMOTE = "sisgan-flow"  # the name a remote given as a URL/path gets in .dvc/config.local
SMALL_FILE_BYTES = 256 * 1024  # uncached outputs larger than this do not travel with the outcome
RUNS_DIR = "runs"  # runs/<stage>.json: a stage's MLflow run record (see sisgan.tracking)


def dvc(*args: str) -> list[str]:
    """The dvc command on this interpreter (the project's), whatever PATH says."""
    return [sys.executable, "-m", "dvc", *args]


def _graph(root: str | Path) -> tuple[list[Any], Any]:
    from dvc.repo import Repo

    # dvc 3.67 trips a DeprecationWarning of its own dependency (pygtrie) while building the graph.
    with warnings.catch_warnings(), Repo(str(root)) as repo:
        warnings.simplefilter("ignore", DeprecationWarning)
        return list(repo.index.stages), repo.index.graph


def pipeline_stages(root: str | Path) -> list[str]:
    """Stage names in run order: upstream first, ties in dvc.yaml order (foreach stages expanded)."""
    import networkx as nx

    stages, graph = _graph(root)
    position = {s: i for i, s in enumerate(stages)}
    # DVC's edges point from a stage to the stages it depends on.
    order = nx.lexicographical_topological_sort(graph.reverse(copy=True), key=lambda s: position.get(s, -1))
    return [s.name for s in order if s in position and s.name]


# The stage that checks params.yaml (pipeline/validate.py). Stages run as `dvc repro --single-item`, which
# skips upstream stages, so a selection always gets it first: a rejected value then stops the run before
# DVC removes any stage's outputs.
GATE_STAGE = "validate"


def select_stages(root: str | Path, wanted: Iterable[str] | None) -> list[str]:
    """`wanted` (any order) in pipeline order, after the params check; None or empty = every stage."""
    order = pipeline_stages(root)
    wanted = list(wanted or [])
    unknown = sorted(set(wanted) - set(order))
    if unknown:
        raise ConfigError(f"stage(s) {unknown} are not in dvc.yaml; its stages are {order}.")
    return [s for s in order if not wanted or s in wanted or s == GATE_STAGE]


def upstream_stages(root: str | Path, stage: str) -> list[str]:
    """The stages whose outputs `stage` reads directly."""
    stages, graph = _graph(root)
    node = next((s for s in stages if s.name == stage), None)
    if node is None:
        raise ConfigError(f"stage {stage!r} is not in dvc.yaml.")
    return sorted(s.name for s in graph.successors(node) if s.name)


def uncached_outs(root: str | Path, stage: str) -> list[str]:
    """Paths of the stage's `cache: false` outputs (metrics, small plots): the DVC remote never holds them."""
    stages, _ = _graph(root)
    node = next(s for s in stages if s.name == stage)
    return [str(o.def_path) for o in node.outs if not o.use_cache]


# Section: dvc.lock.


def read_lock(root: str | Path) -> dict[str, Any]:
    path = Path(root) / LOCK_FILE
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def lock_entry(root: str | Path, stage: str) -> dict[str, Any]:
    return dict((read_lock(root).get("stages") or {}).get(stage) or {})


def merge_lock_entries(root: str | Path, entries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Write other machines' dvc.lock entries into this checkout's dvc.lock; returns the stages changed.

    `dvc pull <stage>` can only fetch what dvc.lock names, and the entry of a stage that ran elsewhere
    exists only there (and in the StageOutcome it sent back).
    """
    lock = read_lock(root) or {"schema": "2.0"}
    stages = lock.setdefault("stages", {}) or {}
    lock["stages"] = stages
    changed = [name for name, entry in entries.items() if entry and stages.get(name) != dict(entry)]
    if not changed:
        return []
    for name in changed:
        stages[name] = dict(entries[name])
    path = Path(root) / LOCK_FILE
    tmp = path.with_name(f".{LOCK_FILE}.tmp")
    tmp.write_text(yaml.safe_dump(lock, sort_keys=False))
    os.replace(tmp, path)
    return changed


# Section: small files that travel with an outcome.


def read_small_files(root: str | Path, paths: Iterable[str]) -> dict[str, str]:
    """Text of the given files (relative paths); missing, binary, large files and folders are skipped."""
    out = {}
    for rel in paths:
        path = Path(root) / rel
        if not path.is_file() or path.stat().st_size > SMALL_FILE_BYTES:
            continue
        try:
            out[rel] = path.read_text()
        except UnicodeDecodeError:
            continue
    return out


def write_small_files(root: str | Path, files: Mapping[str, str]) -> list[str]:
    """Write files carried by outcomes (only inside the checkout); returns the paths changed."""
    base = Path(root).resolve()
    changed = []
    for rel, text in files.items():
        path = (base / rel).resolve()
        if not path.is_relative_to(base):
            raise ValueError(f"refusing to write {rel!r}: it is outside the checkout {base}.")
        if path.is_file() and path.read_text() == text:
            continue
        write_text(path, text)
        changed.append(rel)
    return changed


def run_record_path(stage: str) -> str:
    return f"{RUNS_DIR}/{stage}.json"


def json_files(root: str | Path, folder: str) -> dict[str, Any]:
    """Parsed <folder>/*.json of the checkout, by relative path (unparsable files are skipped)."""
    out = {}
    for path in sorted((Path(root) / folder).glob("*.json")):
        try:
            out[f"{folder}/{path.name}"] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return out


# Section: remotes.


def is_location(remote: str) -> bool:
    """A URL or a path (as opposed to the name of a remote configured in the checkout)."""
    return "://" in remote or remote.startswith(("/", ".", "~")) or os.sep in remote


def remote_setup(root: str | Path, remote: str) -> tuple[list[str] | None, str]:
    """(dvc arguments that register it, or None) and the remote name to pass to pull/push.

    A URL or path is registered in .dvc/config.local (never committed, so the checkout's .dvc/config stays
    as the user wrote it); a relative path is taken relative to the checkout.
    """
    if not is_location(remote):
        return None, remote
    url = remote
    if "://" not in remote:
        url = str((Path(root) / Path(remote).expanduser()).resolve())
    return ["remote", "add", "--local", "--force", FLOW_REMOTE, url], FLOW_REMOTE


def status_needs_only_outputs(status: Mapping[str, Any], stage: str) -> bool:
    """From `dvc status --json <stage>`: the stage is unchanged except for missing/changed outputs, so
    pulling its outputs (not rerunning it) brings it up to date."""
    items = status.get(stage)
    if not items:
        return False
    kinds = {k for item in items if isinstance(item, Mapping) for k in item}
    return bool(kinds) and kinds <= {"changed outs"}
