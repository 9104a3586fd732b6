"""Tokenizer and vocabulary for captions."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from sisgan.errors import DataError
from sisgan.io import write_text

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"[a-z0-9]+")


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()


def unreadable_characters(text: str) -> list[str]:
    """Letters, digits and symbols that tokenize drops without a trace (emoji, CJK, ...), in order, once each.

    Accented Latin letters fold to ASCII and are read; spaces, punctuation and combining marks are not
    words anyway, so they are not reported.
    """
    seen: dict[str, None] = {}
    for ch in text:
        if not _fold(ch) and unicodedata.category(ch)[0] in "LNS":
            seen.setdefault(ch)
    return list(seen)


def tokenize(text: str, max_words: int = 50) -> list[str]:
    """Lowercase word tokens, accents folded to ASCII ("Café" -> "cafe"), at most max_words.

    Punctuation and symbols are dropped, so "" and "?!" give [].
    """
    return _WORD.findall(_fold(text))[:max_words]


class Vocabulary:
    """Word <-> id. Id 0 is <pad>, id 1 is <unk>; then words by decreasing count (ties alphabetical)."""

    def __init__(self, words: Sequence[str], max_words: int = 50) -> None:
        if list(words[:2]) != [PAD, UNK]:
            raise DataError("a vocabulary must start with <pad>, <unk>; rebuild it with Vocabulary.build.")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.max_words = max_words

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1, max_words: int = 50) -> Vocabulary:
        counts = Counter(t for c in captions for t in tokenize(c, max_words))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        if not kept:
            raise DataError(
                f"no word occurs at least text.min_count = {min_count} times in the training captions."
            )
        return cls([PAD, UNK, *kept], max_words)

    def __len__(self) -> int:
        return len(self.words)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and (self.words, self.max_words) == (
            other.words,
            other.max_words,
        )

    def encode(self, text: str) -> list[int]:
        """Token ids of a caption; a caption with no words becomes [<unk>] so every sequence has a step."""
        ids = [self.index.get(t, 1) for t in tokenize(text, self.max_words)]
        return ids or [1]

    def unknown_words(self, text: str) -> list[str]:
        return [t for t in tokenize(text, self.max_words) if t not in self.index]

    def ignored_words(self, text: str) -> list[str]:
        """The words past max_words: the encoder never sees them."""
        return _WORD.findall(_fold(text))[self.max_words :]

    def encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Padded ids [B, L] int64 and lengths [B] int64 (L = longest caption in the batch)."""
        seqs = [self.encode(t) for t in texts]
        lengths = np.asarray([len(s) for s in seqs], np.int64)
        out = np.zeros((len(seqs), int(lengths.max(initial=1))), np.int64)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = s
        return out, lengths

    def to_json(self) -> dict:
        return {"words": self.words, "max_words": self.max_words}

    @classmethod
    def from_json(cls, obj: dict) -> Vocabulary:
        return cls(obj["words"], int(obj["max_words"]))

    def save(self, path: str | Path) -> None:
        write_text(path, json.dumps(self.to_json()) + "\n")

    @classmethod
    def load(cls, path: str | Path, remedy: str = "rebuild it with `dvc repro pretrain_text`") -> Vocabulary:
        if Path(path).is_file() and Path(path).stat().st_size == 0:
            raise DataError(f"vocabulary {path} is empty (0 bytes); {remedy}.")
        try:
            obj = json.loads(Path(path).read_text(encoding="utf-8"))
            words, max_words = obj["words"], obj["max_words"]
            ok = isinstance(words, list) and all(isinstance(w, str) for w in words)
            ok = ok and isinstance(max_words, int) and not isinstance(max_words, bool) and max_words >= 1
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            ok = False
        if not ok or words[:2] != [PAD, UNK]:
            raise DataError(
                f"vocabulary {path} is not a valid sisgan vocabulary (truncated, corrupt, edited); {remedy}."
            )
        return cls(words, max_words)
