"""The text encoder φ(t): word embedding -> one-layer GRU; φ(t) is the last hidden state."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from sisgan.errors import ConfigError
from sisgan.text.tokenizer import Vocabulary


class TextEncoder(nn.Module):
    """tokens [B, L] long (0-padded) + lengths [B] -> φ(t) [B, hidden_dim]."""

    def __init__(self, vocab_size: int, embed_dim: int = 300, hidden_dim: int = 300) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.gru = nn.GRU(embed_dim, hidden_dim, num_layers=1, batch_first=True)
        self.out_dim = hidden_dim

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)  # [B, L, E]
        # Packing makes padding invisible: the last hidden state is the one at each caption's own end.
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)  # h: [1, B, H]
        return h[0]


def load_word_vectors(path: str | Path, vocab: Vocabulary, dim: int) -> tuple[torch.Tensor, int]:
    """Rows of a fastText/GloVe `.vec` text file for the vocabulary's words: ([V, dim], words found).

    Words absent from the file keep a small random init (returned rows are NaN there, filled by caller).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"text.word_vectors: {path} not found; give the path of a local .vec file (e.g. fastText "
            "wiki.en.vec) or set it to null to learn word embeddings from scratch."
        )
    table = torch.full((len(vocab), dim), float("nan"))
    found = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh):
            parts = line.rstrip().split(" ")
            if lineno == 0 and len(parts) == 2:
                continue  # fastText header: "<count> <dim>"
            if len(parts) - 1 != dim:
                raise ConfigError(
                    f"text.word_vectors: {path} has {len(parts) - 1}-d vectors, text.embed_dim is {dim}; "
                    "set text.embed_dim to match the file."
                )
            idx = vocab.index.get(parts[0])
            if idx is not None and idx > 1:
                table[idx] = torch.tensor([float(v) for v in parts[1:]])
                found += 1
    return table, found


def init_from_word_vectors(encoder: TextEncoder, path: str | Path, vocab: Vocabulary) -> int:
    """Copy pretrained vectors into the embedding; returns how many vocabulary words were found."""
    table, found = load_word_vectors(path, vocab, encoder.embed.embedding_dim)
    with torch.no_grad():
        have = ~torch.isnan(table).any(dim=1)
        encoder.embed.weight[have] = table[have]
    return found
