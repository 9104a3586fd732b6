"""The pretrained text side as one object: vocabulary + φ(t) + the VSE image encoder, saved as a folder.

Folder layout (what `pretrain_text` writes to models/text/ and the GAN stages read):
    weights.pt    state_dicts of both encoders + config + package version (loaded with weights_only=True)
    vocab.json    the vocabulary
    config.json   the resolved TextConfig (human-readable copy)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sisgan.config import TextConfig
from sisgan.errors import DataError
from sisgan.io import atomic_write, write_json
from sisgan.text.encoder import TextEncoder
from sisgan.text.image_encoder import ConvImageEncoder, VGGImageEncoder
from sisgan.text.tokenizer import Vocabulary

WEIGHTS, VOCAB, CONFIG = "weights.pt", "vocab.json", "config.json"
TEXT_REMEDY = (
    "restore the folder with `dvc checkout models/text` or rebuild it with `dvc repro pretrain_text`"
)


def build_image_side(cfg: TextConfig, load_weights: bool = True) -> nn.Module:
    if cfg.image_encoder == "vgg16":
        return VGGImageEncoder((cfg.vgg_weights or "") if load_weights else None, cfg.hidden_dim)
    return ConvImageEncoder(cfg.hidden_dim, cfg.cnn_width)


@dataclasses.dataclass
class TextModel:
    vocab: Vocabulary
    text_encoder: TextEncoder
    image_encoder: nn.Module
    config: TextConfig

    @classmethod
    def create(cls, cfg: TextConfig, vocab: Vocabulary) -> TextModel:
        return cls(vocab, TextEncoder(len(vocab), cfg.embed_dim, cfg.hidden_dim), build_image_side(cfg), cfg)

    @property
    def device(self) -> torch.device:
        return next(self.text_encoder.parameters()).device

    def to(self, device: str | torch.device) -> TextModel:
        self.text_encoder.to(device)
        self.image_encoder.to(device)
        return self

    def eval(self) -> TextModel:
        self.text_encoder.eval()
        self.image_encoder.eval()
        return self

    # Section: encoding.

    def tokens(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, lengths = self.vocab.encode_batch(texts)
        return torch.from_numpy(ids).to(self.device), torch.from_numpy(lengths)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 2048) -> torch.Tensor:
        """φ(t) for each text: [M, hidden_dim] float32 on the model's device."""
        self.text_encoder.eval()
        out = [
            self.text_encoder(*self.tokens(texts[i : i + batch_size]))
            for i in range(0, len(texts), batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0, self.text_encoder.out_dim, device=self.device)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """images float [B, 3, H, W] in [-1, 1] -> [B, hidden_dim]."""
        self.image_encoder.eval()
        parts = [
            self.image_encoder(images[i : i + batch_size].to(self.device))
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(parts)

    def caption_tokens(self, captions: Sequence[Sequence[str]], length: int) -> np.ndarray:
        """Token ids of every caption of every image: [N, C_max, length] int64, 0-padded (as features)."""
        out = np.zeros((len(captions), max((len(c) for c in captions), default=1), length), np.int64)
        for i, caps in enumerate(captions):
            for j, caption in enumerate(caps):
                ids = self.vocab.encode(caption)[:length]
                out[i, j, : len(ids)] = ids
        return out

    def caption_features(self, captions: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """φ(t) of every caption of every image: features [N, C_max, H] float32 (zero-padded), counts [N]."""
        counts = np.asarray([len(c) for c in captions], np.int64)
        flat = [t for caps in captions for t in caps]
        feats = self.encode_texts(flat).float().cpu().numpy()
        out = np.zeros((len(captions), int(counts.max(initial=1)), feats.shape[1]), np.float32)
        start = 0
        for i, n in enumerate(counts):
            out[i, :n] = feats[start : start + n]
            start += n
        return out, counts

    # Section: persistence.

    def save(self, folder: str | Path) -> None:
        from sisgan import __version__

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            "text_encoder": self.text_encoder.state_dict(),
            "image_encoder": self.image_encoder.state_dict(),
            "config": self.config.to_dict(),
            "vocab_size": len(self.vocab),
            "sisgan_version": __version__,
        }
        atomic_write(folder / WEIGHTS, lambda tmp: torch.save(state, tmp))
        self.vocab.save(folder / VOCAB)
        write_json(folder / CONFIG, self.config.to_dict())

    @classmethod
    def load(
        cls, folder: str | Path, map_location: str | torch.device = "cpu", remedy: str = TEXT_REMEDY
    ) -> TextModel:
        """The folder `save` wrote; a missing, damaged or unsafe file is one DataError ending in `remedy`."""
        from sisgan.errors import ConfigError
        from sisgan.train.checkpoint import load_weights

        folder = Path(folder)
        if not (folder / WEIGHTS).is_file() or not (folder / VOCAB).is_file():
            raise DataError(f"no pretrained text encoder in {folder}; run `dvc repro pretrain_text` first.")
        state = load_weights(folder / WEIGHTS, remedy, map_location, what="text encoder weights")
        keys = ("text_encoder", "image_encoder", "config")
        if not isinstance(state, dict) or any(k not in state for k in keys):
            raise DataError(f"{folder / WEIGHTS} is not a sisgan text encoder file; {remedy}.")
        try:
            cfg = TextConfig.from_dict(state["config"])
        except ConfigError as e:
            raise DataError(
                f"{folder / WEIGHTS} holds a config this version cannot read ({e}); {remedy}."
            ) from None
        vocab = Vocabulary.load(folder / VOCAB, remedy)
        model = cls(
            vocab, TextEncoder(len(vocab), cfg.embed_dim, cfg.hidden_dim), build_image_side(cfg, False), cfg
        )
        try:
            model.text_encoder.load_state_dict(state["text_encoder"])
            model.image_encoder.load_state_dict(state["image_encoder"])
        except (RuntimeError, TypeError, AttributeError):
            raise DataError(
                f"{folder / WEIGHTS} does not fit its config and {VOCAB} (other shapes or layers); {remedy}."
            ) from None
        return model.to(map_location).eval()


def save_features(
    path: str | Path, image_ids: Sequence[str], features: np.ndarray, counts: np.ndarray
) -> None:
    """Cached φ(t) of a split, aligned with the shards' image_id order."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would add ".npz" to a temporary name
            np.savez(fh, features=features, counts=counts, image_ids=np.asarray(image_ids))

    atomic_write(path, write)


def load_features(path: str | Path, image_ids: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, C, H], counts [N]); checks alignment with the given image ids."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"cached caption features {path} not found; run `dvc repro pretrain_text` first.")
    try:
        with np.load(path) as z:  # allow_pickle=False: an object array in the file is refused, never run
            feats, counts, ids = z["features"], z["counts"], z["image_ids"]
    except Exception:  # zipfile.BadZipFile, EOFError, KeyError, ValueError (pickled arrays), ...
        raise DataError(
            f"cached caption features {path} are unreadable (truncated, corrupt or not written by sisgan); "
            "rerun `dvc repro pretrain_text`."
        ) from None
    if image_ids is not None and list(ids) != list(image_ids):
        raise DataError(f"{path} is not aligned with the current shards; rerun `dvc repro pretrain_text`.")
    return feats, counts
