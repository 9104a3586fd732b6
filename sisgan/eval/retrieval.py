"""Cross-modal retrieval recall@K for the visual-semantic embedding."""

from __future__ import annotations

from collections.abc import Sequence

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
