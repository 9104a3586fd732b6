"""Word-level conditioning: image positions read the caption's words (ControlGAN / ManiGAN's spatial
attention), so that "a blue crown" reaches the head and not the wings.

The sentence vector φ(t) has to carry every (part, colour) binding of a caption in one vector, and the
generator must decode it everywhere at once; with attention each position picks the words that concern it.
The words are read by the generator's own trainable word reader (WordReader: an embedding and a
bidirectional GRU over the caption's token ids): the state at "crown" in "a blue crown" has read "blue",
the one at "blue" in "the crown is blue" has read "crown", so each binding sits in some word's state.
Reading the frozen text encoder's per-word states instead was measured and not adopted (RESULTS.md,
"Word-level conditioning"): that encoder was trained to rank whole sentences, and its states do not
separate the parts a generator has to find.
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


class WordReader(nn.Module):
    """Token ids [B, L] int64 (0-padded at the end) -> per-word states [B, L, 2·dim], trained with G.

    A bidirectional GRU whose backward half reads each caption from its own last word, so a state does not
    depend on how much padding follows (training pads to the longest caption of the split, inference to
    the longest of its batch). The reversal is a per-row gather, not a packed sequence: packing needs the
    lengths on the host (a sync, and no CUDA graph).
    """

    def __init__(self, vocab_size: int, dim: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.forward_gru = nn.GRU(dim, dim, batch_first=True)
        self.backward_gru = nn.GRU(dim, dim, batch_first=True)
        self.out_dim = 2 * dim

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        e = self.embed(tokens)  # [B, L, dim]
        lengths = (tokens > 0).sum(1, keepdim=True)  # [B, 1]
        pos = torch.arange(tokens.shape[1], device=tokens.device)[None]  # [1, L]
        # Each caption's words in reverse, its padding where it was; the same gather undoes it.
        rev = torch.where(pos < lengths, lengths - 1 - pos, pos)[..., None].expand_as(e)  # [B, L, dim]
        backward = self.backward_gru(e.gather(1, rev))[0].gather(1, rev)
        return torch.cat([self.forward_gru(e)[0], backward], dim=-1)


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
    [-1, 1], and the attention weights (gan.ground_weight supervises them). A colour is a function of a
    word's state alone, so a part is painted in one colour, the one its words name; the generator's mask
    decides where the paint goes.
    """

    def __init__(self, channels: int, word_dim: int, dim: int = 32) -> None:
        super().__init__()
        self.query = nn.Conv2d(channels, dim, 3, padding=1)
        self.key = nn.Linear(word_dim, dim)
        self.colour = nn.Sequential(nn.Linear(word_dim, 64), nn.ReLU(inplace=True), nn.Linear(64, 3))

    def forward(
        self, x: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (colours [B, 3, S, S], the attention weights [B, S·S, L] they were read with)."""
        b, _, h, w = x.shape
        words = words.to(x.dtype)
        weights = attend(self.query(x).flatten(2).transpose(1, 2), self.key(words), word_mask)  # [B, SS, L]
        colours = torch.tanh(self.colour(words))  # [B, L, 3]
        return (weights @ colours).transpose(1, 2).reshape(b, 3, h, w), weights
