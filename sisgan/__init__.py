"""SISGAN: text-guided image manipulation (Dong et al., ICCV 2017).

The package has no import-time side effects: nothing is downloaded, no tracking URI is set and no
directory is created until a function is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from sisgan.inference import Manipulator

__all__ = ["Manipulator", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: importing sisgan must stay cheap (no torch import for `sisgan --help`).
    if name == "Manipulator":
        from sisgan.inference import Manipulator

        return Manipulator
    raise AttributeError(f"module 'sisgan' has no attribute {name!r}")
