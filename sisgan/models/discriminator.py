"""The matching-aware discriminator: is this a real image, and does it match this text?"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sisgan.errors import ConfigError
from sisgan.models.blocks import ch, init_weights, tile


class Discriminator(nn.Module):
    """(image [B, 3, S, S], φ(t) [B, T]) -> logit [B].

    Split in two so one image encoding can be scored against several texts (real/match and
    real/mismatch share it): `encode` [B, 3, S, S] -> [B, 512w, S/16, S/16], `score` (features, text).
    """

    def __init__(self, image_size: int = 64, text_dim: int = 300, width: float = 1.0) -> None:
        super().__init__()
        if image_size % 16 or image_size < 16:
            raise ConfigError(f"gan.image_size = {image_size} must be a multiple of 16 (16, 32, 48, 64, ...).")
        c1, c2, c3, c4 = ch(64, width), ch(128, width), ch(256, width), ch(512, width)
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c1, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c1, c2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(c2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c2, c3, 4, 2, 1, bias=False),
            nn.BatchNorm2d(c3),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c3, c4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(c4),
        )
        r = ch(128, width)
        self.residual = nn.Sequential(
            nn.Conv2d(c4, r, 1, bias=False),
            nn.BatchNorm2d(r),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(r, r, 3, padding=1, bias=False),
            nn.BatchNorm2d(r),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(r, c4, 3, padding=1, bias=False),
            nn.BatchNorm2d(c4),
        )
        self.text_dim_out = ch(128, width)
        self.compress = nn.Sequential(nn.Linear(text_dim, self.text_dim_out), nn.LeakyReLU(0.2, inplace=True))
        self.feat_size = image_size // 16
        self.classifier = nn.Sequential(
            nn.Conv2d(c4 + self.text_dim_out, c4, 1, bias=False),
            nn.BatchNorm2d(c4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c4, 1, self.feat_size),  # covers the whole S/16 map: one logit per image
        )
        self.apply(init_weights)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        x = self.encoder(image)  # [B, 512w, S/16, S/16]
        return F.leaky_relu(x + self.residual(x), 0.2)

    def score(self, features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        t = tile(self.compress(text), features.shape[-1]).to(features.dtype)  # [B, 128w, S/16, S/16]
        return self.classifier(torch.cat([features, t], dim=1)).flatten()  # [B]

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.score(self.encode(image), text)
