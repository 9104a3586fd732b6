"""Image side of the visual-semantic embedding (VSE), used to pretrain φ(t) and to score outputs (MP)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sisgan.errors import ConfigError

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvImageEncoder(nn.Module):
    """A CNN trained from scratch: images [B, 3, H, W] in [-1, 1] -> [B, out_dim]. Any H, W >= 16."""

    def __init__(self, out_dim: int = 300, width: int = 64) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:], strict=True)):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=i == 0)]
            if i > 0:
                layers += [nn.BatchNorm2d(cout)]
            layers += [nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers)  # [B, 8w, H/16, W/16]
        self.proj = nn.Linear(chans[-1], out_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(images).mean(dim=(2, 3)))


class VGGImageEncoder(nn.Module):
    """Frozen ImageNet VGG-16 fc7 (4096) + a trainable linear map to out_dim (the paper's image side)."""

    def __init__(self, weights: str | Path | None, out_dim: int = 300) -> None:
        """weights: torchvision's ImageNet vgg16 file; None builds the structure for a saved state_dict."""
        super().__init__()
        from torchvision.models import vgg16

        vgg = vgg16()
        if weights is not None:
            vgg.load_state_dict(load_local_weights(weights, "text.vgg_weights", "vgg16-397923af.pth"))
        self.backbone = vgg.features
        self.fc7 = nn.Sequential(*list(vgg.classifier.children())[:5])  # fc6, relu, drop, fc7, relu
        for p in [*self.backbone.parameters(), *self.fc7.parameters()]:
            p.requires_grad_(False)
        self.proj = nn.Linear(4096, out_dim)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGImageEncoder:
        super().train(mode)
        self.backbone.eval()  # frozen: dropout and batch statistics stay in inference mode
        self.fc7.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate((images + 1) / 2, size=224, mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        with torch.no_grad():
            feats = self.fc7(torch.flatten(F.adaptive_avg_pool2d(self.backbone(x), 7), 1))
        return self.proj(feats)


def load_local_weights(path: str | Path | None, param: str, filename: str) -> dict[str, torch.Tensor]:
    """A torchvision state_dict from a local file; nothing is ever downloaded implicitly."""
    url = f"https://download.pytorch.org/models/{filename}"
    if not path:
        raise ConfigError(f"{param} is not set; download {url} and set {param} to its local path.")
    if not Path(path).is_file():
        raise ConfigError(f"{param}: {path} not found; download {url} and set {param} to its local path.")
    from sisgan.train.checkpoint import load_weights

    state = load_weights(path, f"download {url} again and set {param} to its local path", what=param)
    if not isinstance(state, dict):
        raise ConfigError(f"{param}: {path} is not a state_dict; download {url} and set {param} to its path.")
    return state
