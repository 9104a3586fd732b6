"""Word-level conditioning: image positions read the caption's words (ControlGAN / ManiGAN's spatial
attention), so that "a blue crown" reaches the head and not the wings.

The sentence vector φ(t) has to carry every (part, colour) binding of a caption in one vector, and the
generator must decode it everywhere at once; with attention each position picks the words that concern it.
The words are the frozen text encoder's GRU states after each word (sisgan.text.encoder.TextEncoder.words):
the state after "crown" in "a blue crown" has read "blue", the one after "blue" in "the crown is blue" has
read "crown", so each binding sits in some word's state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_MASKED = -1e4  # a logit for padded words: exp() underflows to 0 in fp32 and bf16 alike


def attend(query: torch.Tensor, keys: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
    """Softmax attention weights of positions over words: query [B, P, D], keys [B, L, D], word_mask [B, L]
    (True = a real word) -> [B, P, L], each row summing to 1 over the real words."""
    logits = query @ keys.transpose(1, 2) / math.sqrt(query.shape[-1])  # [B, P, L]
    return logits.masked_fill(~word_mask[:, None, :], _MASKED).softmax(dim=-1)


class WordAttention(nn.Module):
    """features [B, C, H, W] + words [B, L, T] (word_mask [B, L]) -> [B, C, H, W]: each position adds what
    the words it attends to say (a residual update, so an untrained block is close to the identity)."""

    def __init__(self, channels: int, word_dim: int, dim: int = 64) -> None:
        super().__init__()
        self.query = nn.Conv2d(channels, dim, 1)
        self.key = nn.Linear(word_dim, dim)
        self.value = nn.Linear(word_dim, channels)
        self.merge = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, x: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        words = words.to(x.dtype)
        weights = attend(self.query(x).flatten(2).transpose(1, 2), self.key(words), word_mask)  # [B, HW, L]
        context = (weights @ self.value(words)).transpose(1, 2).reshape(b, c, h, w)
        return x + F.relu(self.merge(torch.cat([x, context], dim=1)))


class WordPaint(nn.Module):
    """The repaint layer of the "paint" output: every pixel takes the colour of the words it attends to.

    features [B, C, S, S] (decoder features and the source pixels) + words -> colours [B, 3, S, S] in
    [-1, 1]. A colour is a function of a word's state alone, so a part is painted in one colour, the one
    its words name; the generator's mask decides where the paint goes.
    """

    def __init__(self, channels: int, word_dim: int, dim: int = 32) -> None:
        super().__init__()
        self.query = nn.Conv2d(channels, dim, 3, padding=1)
        self.key = nn.Linear(word_dim, dim)
        self.colour = nn.Sequential(nn.Linear(word_dim, 64), nn.ReLU(inplace=True), nn.Linear(64, 3))

    def forward(self, x: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        words = words.to(x.dtype)
        weights = attend(self.query(x).flatten(2).transpose(1, 2), self.key(words), word_mask)  # [B, SS, L]
        colours = torch.tanh(self.colour(words))  # [B, L, 3]
        return (weights @ colours).transpose(1, 2).reshape(b, 3, h, w)
