"""The one conversion between stored pixels and the networks' range.

Images are stored and shown as uint8 [N, S, S, 3]; the networks read and write float [N, 3, S, S] in
[-1, 1] (the generator's tanh range).
"""

from __future__ import annotations

import numpy as np
import torch


def to_unit(images: np.ndarray | torch.Tensor, device: str | torch.device | None = None) -> torch.Tensor:
    """uint8 [N, S, S, 3] (array or tensor) -> float [N, 3, S, S] in [-1, 1]."""
    tensor = torch.as_tensor(np.ascontiguousarray(images) if isinstance(images, np.ndarray) else images)
    return unit_range(tensor.to(device).permute(0, 3, 1, 2))


def unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 3, S, S] -> float in [-1, 1], same layout."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float [N, 3, S, S] in [-1, 1] (values outside are clipped) -> uint8 [N, S, S, 3] on the host."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
