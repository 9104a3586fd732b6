"""Cross-modal retrieval recall@K for the visual-semantic embedding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def recall_at_k(
    images: torch.Tensor, texts: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """images [N, D], texts [N, D], row i of each a pair. Text->image and image->text recall@K, plus chance.

    Chance level of recall@K with N candidates is K / N.
    """
    sims = F.normalize(texts.float(), dim=1) @ F.normalize(images.float(), dim=1).t()  # [N texts, N images]
    n = sims.shape[0]
    target = torch.arange(n, device=sims.device)
    # Rank of the true match = number of candidates scoring strictly higher.
    t2i_rank = (sims > sims[target, target][:, None]).sum(dim=1)
    i2t_rank = (sims.t() > sims[target, target][:, None]).sum(dim=1)
    out: dict[str, float] = {}
    for k in ks:
        out[f"t2i_r{k}"] = float((t2i_rank < k).float().mean())
        out[f"i2t_r{k}"] = float((i2t_rank < k).float().mean())
        out[f"chance_r{k}"] = min(1.0, k / n)
    return out


def r_precision(
    images: torch.Tensor, texts: torch.Tensor, candidates: int = 100, seed: int = 0
) -> dict[str, float]:
    """AttnGAN's R-precision (R = 1): each image's own text ranked among `candidates` texts, 1 true and
    the rest drawn at random from the other images' texts; the score is how often the true one ranks first.

    images [N, D], texts [N, D], row i of each a pair. With fewer than `candidates` images, all other texts
    are the distractors. The draw has its own seeded generator: it never touches torch's random state.
    """
    n = images.shape[0]
    k = min(candidates, n)
    rng = np.random.default_rng(seed)
    # Distractors of image i: k - 1 distinct other images, drawn as offsets 1..n-1 from i.
    offsets = np.stack([rng.choice(np.arange(1, n), size=k - 1, replace=False) for _ in range(n)])
    rows = np.concatenate([np.arange(n)[:, None], (np.arange(n)[:, None] + offsets) % n], axis=1)  # [N, k]
    all_sims = F.normalize(images.float(), dim=1) @ F.normalize(texts.float(), dim=1).t()  # [N img, N txt]
    sims = all_sims.gather(1, torch.from_numpy(rows).to(all_sims.device))  # [N, k], true text first
    hits = (sims[:, 1:] < sims[:, :1]).all(dim=1)
    return {"r_precision": float(hits.float().mean()), "chance_r_precision": 1.0 / k}
