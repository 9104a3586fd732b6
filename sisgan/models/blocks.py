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

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """cond is ignored: the paper's block reads no text (one signature with TextResidualBlock)."""
        return F.relu(x + self.body(x))


class TextResidualBlock(ResidualBlock):
    """A residual block whose first normalisation is modulated by the text condition (FiLM):
    relu(x + BN(conv(relu(BN(conv(x)) · (1 + γ(c)) + β(c))))), with γ, β [B, C] linear in c [B, D].

    Concatenating the condition once before the blocks leaves every later layer to carry it along; here
    each block reads it again, per channel (the text-adaptive modulation of TAGAN and ManiGAN).
    """

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__(channels)
        self.film = nn.Linear(cond_dim, 2 * channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        assert cond is not None, "TextResidualBlock needs the condition"
        gamma, beta = self.film(cond.to(x.dtype)).chunk(2, dim=1)  # [B, C] each
        h = self.body[1](self.body[0](x))  # conv, BN
        h = F.relu(h * (1 + gamma[:, :, None, None]) + beta[:, :, None, None])
        return F.relu(x + self.body[4](self.body[3](h)))


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
