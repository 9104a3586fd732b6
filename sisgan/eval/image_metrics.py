"""Pixel metrics on uint8 images [N, H, W, 3]: PSNR, SSIM, L1 (in [0, 1] units), each over the whole image or
weighted by a mask [N, H, W] (e.g. the background only)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PSNR_CAP = 100.0  # identical images have infinite PSNR; JSON has no inf, so it is capped here


def _float(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).float().div(255.0).permute(0, 3, 1, 2)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-image PSNR [N] in dB (over mask [N, H, W] when given), capped at PSNR_CAP."""
    diff = (a.astype(np.float64) - b.astype(np.float64)) / 255.0
    sq = (diff**2).mean(axis=-1)  # [N, H, W]
    if mask is None:
        mse = sq.reshape(len(sq), -1).mean(axis=1)
    else:
        m = mask.reshape(len(mask), -1).astype(np.float64)
        mse = (sq.reshape(len(sq), -1) * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1)
    with np.errstate(divide="ignore"):
        out = 10 * np.log10(1.0 / mse)
    return np.minimum(out, PSNR_CAP)


def l1(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-image mean absolute difference [N] in [0, 1] units (over mask [N, H, W] weights when given; NaN
    for an image whose mask is empty)."""
    if mask is None:
        return np.abs(a.astype(np.float64) - b.astype(np.float64)).reshape(len(a), -1).mean(axis=1) / 255.0
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).mean(axis=-1) / 255.0  # [N, H, W]
    return _weighted_mean(diff, mask)


def _weighted_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[N, ...] values averaged per image with weights [N, ...]; NaN where the weights sum to 0."""
    v = values.reshape(len(values), -1)
    m = mask.reshape(len(mask), -1).astype(np.float64)
    total = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (v * m).sum(axis=1) / total, np.nan)


def grey(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float [N, H, W, 1] luma (ITU-R BT.601 weights), 0-255."""
    return (images.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))[..., None]


def ssim(
    a: np.ndarray, b: np.ndarray, window: int = 7, sigma: float = 1.5, mask: np.ndarray | None = None
) -> np.ndarray:
    """Per-image SSIM [N] (Wang et al. 2004, Gaussian window, mean over channels and valid positions).

    A 7-pixel window (not the usual 11) because the images are 32-64 pixels wide. Images may have any number
    of channels ([N, H, W, 1] from `grey`: grey SSIM). mask [N, H, W] bool: the mean over the windows that lie
    wholly inside it (NaN for an image with none).
    """
    s = ssim_map(a, b, window, sigma)
    return s.mean(dim=(1, 2, 3)).numpy() if mask is None else masked_mean(s, mask)


def masked_mean(ssim: torch.Tensor, mask: np.ndarray) -> np.ndarray:
    """Per-image mean [N] of an SSIM map [N, C, H - w + 1, W - w + 1] over the windows wholly inside mask
    [N, H, W] bool (a window that straddles the mask's edge also sees what lies outside it); NaN where no
    window is."""
    window = mask.shape[1] - ssim.shape[2] + 1
    outside = torch.from_numpy(~np.asarray(mask, bool)).float()[:, None]
    inside = F.max_pool2d(outside, window, stride=1)[:, 0].numpy() == 0  # [N, H - w + 1, W - w + 1]
    return _weighted_mean(ssim.mean(dim=1).numpy(), inside)


def ssim_map(a: np.ndarray, b: np.ndarray, window: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """SSIM at every valid position: [N, H, W, C] (uint8, or float 0-255) -> [N, C, H - w + 1, W - w + 1]."""
    x, y = _float(a).double(), _float(b).double()
    c, (h, w) = x.shape[1], x.shape[2:]
    g = torch.exp(-((torch.arange(window, dtype=torch.float64) - window // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    # The separable Gaussian as two banded matrices: float64 matmuls run ~12x faster on a CPU than a
    # float64 depthwise convolution (the evaluate stage's largest cost), with the same sums.
    rows, cols = _band(h, g), _band(w, g)  # [H, H - w + 1], [W, W - w + 1]
    moments = rows.T @ (torch.cat([x, y, x * x, y * y, x * y], dim=1) @ cols)  # [N, 5C, H', W']
    mu_x, mu_y, xx, yy, xy = moments.split(c, dim=1)
    sxx = xx - mu_x**2
    syy = yy - mu_y**2
    sxy = xy - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))


def _band(n: int, g: torch.Tensor) -> torch.Tensor:
    """[n, n - w + 1]: column j holds the w-tap kernel g at rows j..j + w - 1 (a 'valid' 1-D filter)."""
    out = torch.zeros(n, n - len(g) + 1, dtype=g.dtype)
    for j in range(out.shape[1]):
        out[j : j + len(g), j] = g
    return out
