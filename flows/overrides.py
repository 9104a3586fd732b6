"""Params overrides: the flow writes them into the checkout's params.yaml before `dvc repro`.

Why this mechanism: DVC decides what reruns from params.yaml, so an override must be in params.yaml to
count; and written there, the checkout's params.yaml, dvc.lock and outputs agree after the run, so a plain
`dvc repro` afterwards reproduces exactly what the flow ran (the same contract as `dvc exp run -S`, which
needs git and is not available in every checkout). The file is edited round-trip: comments and key order
survive. An override may only change a key params.yaml already has, since params.yaml holds every knob
and a new key is a typo.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sisgan.errors import ConfigError

PARAMS_FILE = "params.yaml"


def flatten(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'data': {'load_size': 24}} or {'data.load_size': 24} -> {'data.load_size': 24}."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out |= flatten(value, f"{dotted}.")
        else:
            out[dotted] = value
    return out


def _yaml() -> Any:
    from ruamel.yaml import YAML  # a dependency of dvc: present wherever the flows run

    y = YAML()
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap long lines
    # Keep `null` written as `null` (ruamel's default writes nothing after the colon).
    null = "tag:yaml.org,2002:null"
    y.representer.add_representer(type(None), lambda r, _: r.represent_scalar(null, "null"))
    return y


def _set(doc: Any, dotted: str, value: Any) -> Any:
    """Set doc[a][b][c] for 'a.b.c'; returns the old value. A missing key is an error naming valid ones."""
    *parents, leaf = dotted.split(".")
    node = doc
    for i, part in enumerate(parents):
        child = node.get(part) if isinstance(node, Mapping) else None
        if not isinstance(child, Mapping):
            where = ".".join(parents[: i + 1])
            raise ConfigError(f"override {dotted!r}: params.yaml has no section {where!r}.")
        node = child
    if leaf not in node:
        where = ".".join(parents) or "the top level"
        raise ConfigError(
            f"override {dotted!r}: params.yaml has no key {leaf!r} in {where}; valid keys are {list(node)}."
        )
    old = node[leaf]
    node[leaf] = value
    return old


def apply_overrides(root: str | Path, overrides: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Write `overrides` into root/params.yaml; returns {key: (old, new)} for the values that changed.

    The result is checked the way a stage loads it; on any error params.yaml is left as it was.
    """
    from pipeline.common import load_params

    path = Path(root) / PARAMS_FILE
    flat = flatten(overrides)
    if not flat:
        return {}
    y = _yaml()
    original = path.read_text()
    doc = y.load(original)
    changes = {}
    for key, value in flat.items():
        old = _set(doc, key, value)
        if old != value:
            changes[key] = (old, value)
    if not changes:
        return {}
    buf = io.StringIO()
    y.dump(doc, buf)
    tmp = path.with_name(f".{PARAMS_FILE}.tmp")
    tmp.write_text(buf.getvalue())
    try:
        load_params(tmp)
    except ConfigError as e:
        tmp.unlink()
        raise ConfigError(f"overrides {flat}: {str(e).replace(str(tmp), PARAMS_FILE)}") from None
    os.replace(tmp, path)
    return changes
