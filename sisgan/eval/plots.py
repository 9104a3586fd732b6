"""Plot files: CSV for `dvc plots`, PNG drawn here because DVC's HTML plots need a CDN (blank offline)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sisgan.io import atomic_write


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    columns = list(rows[0]) if rows else []

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    atomic_write(path, write)


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
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
