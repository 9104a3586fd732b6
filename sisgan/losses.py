"""Losses: the VSE ranking loss and the SISGAN adversarial objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_ranking_loss(images: torch.Tensor, texts: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """Bidirectional hinge ranking loss on L2-normalised embeddings (Kiros et al. 2014).

    images, texts: [B, D], row i of each is a matching pair; every other row is a negative.
    Sum over negatives, mean over the batch.
    """
    v = F.normalize(images, dim=1)
    t = F.normalize(texts, dim=1)
    scores = v @ t.t()  # [B, B]; scores[i, j] = cos(image i, text j)
    pos = scores.diag()
    off = ~torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)
    cost_text = (margin - pos[:, None] + scores).clamp(min=0) * off  # image i vs wrong texts
    cost_image = (margin - pos[None, :] + scores).clamp(min=0) * off  # text j vs wrong images
    return (cost_text.sum() + cost_image.sum()) / scores.shape[0]
