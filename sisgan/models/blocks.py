"""Building blocks shared by the generator and the discriminator."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def ch(channels: int, width: float) -> int:
    """Channel count scaled by the width multiplier (at least 8)."""
    return max(8, round(channels * width))


def tile(vec: torch.Tensor, size: int) -> torch.Tensor:
    """[B, C] -> [B, C, size, size] (the text condition copied to every spatial position)."""
    return vec[:, :, None, None].expand(-1, -1, size, size)


class ResidualBlock(nn.Module):
    """[B, C, H, W] -> [B, C, H, W]: relu(x + BN(conv(relu(BN(conv(x))))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


def init_weights(module: nn.Module) -> None:
    """DCGAN init, as the reference: N(0, 0.02) for conv/linear weights, N(1, 0.02) for BN scales."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        if module.weight.requires_grad:
            nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None and module.bias.requires_grad:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d) and module.affine and module.weight.requires_grad:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
