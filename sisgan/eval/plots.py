"""Plot files: CSV for `dvc plots`, PNG drawn here because DVC's HTML plots need a CDN (blank offline)."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0]) if rows else []
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    os.replace(tmp, path)


def line_png(
    path: str | Path,
    rows: Sequence[Mapping[str, Any]],
    x: str,
    panels: Mapping[str, Sequence[str]],
    title: str = "",
) -> None:
    """One subplot per panel (title -> columns), each column a line against x."""
    import matplotlib

    matplotlib.use("Agg")  # headless; set here, not at import
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    xs = [r[x] for r in rows]
    for ax, (name, columns) in zip(axes[0], panels.items(), strict=True):
        for col in columns:
            ax.plot(xs, [r[col] for r in rows], marker="." if len(rows) < 30 else None, label=col)
        ax.set_title(name)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
