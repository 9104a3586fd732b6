"""A tiny, randomly initialised model bundle (generator.pt + text/) for the inference, CLI, serving and
register tests: the shapes and files of a trained model, built in a fraction of a second."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

CAPTIONS = [
    "a bird with a red head and blue wings",
    "this bird has a yellow body and a black beak",
    "a small green bird with white wings",
]
IMAGE_SIZE, LOAD_SIZE, TEXT_DIM = 16, 20, 16


def make_models(root: Path, seed: int = 0, output: str = "direct", closed: bool = False) -> Path:
    """The project layout: root/gan/generator.pt and root/text/ (what train_gan and pretrain_text write).

    output: gan.output ("direct", "mask" or "paint"); closed: a mask generator whose mask is shut (exactly
    0 everywhere), so that it returns its source."""
    import torch

    from sisgan.config import GANConfig, TextConfig
    from sisgan.models import generator_from_config
    from sisgan.text.model import TextModel
    from sisgan.text.tokenizer import Vocabulary
    from sisgan.train import checkpoint

    torch.manual_seed(seed)
    text_cfg = TextConfig(embed_dim=8, hidden_dim=TEXT_DIM, cnn_width=4, image_size=IMAGE_SIZE)
    vocab = Vocabulary.build(CAPTIONS)
    TextModel.create(text_cfg, vocab).save(root / "text")
    gan_cfg = GANConfig(image_size=IMAGE_SIZE, width=0.125, output=output)
    g = generator_from_config(gan_cfg, TEXT_DIM, vocab_size=len(vocab))
    if closed:
        with torch.no_grad():  # sigmoid(-1e4) is 0.0 in float32
            g.to_rgb.weight[3:].zero_()
            g.to_rgb.bias[3:].fill_(-1e4)
    state = {
        "generator": g.state_dict(),
        "gan_config": gan_cfg.to_dict(),
        "text_dim": TEXT_DIM,
        "vocab_size": g.vocab_size,
        "load_size": LOAD_SIZE,
        "dataset": "synth-birds",
        "text_model": "models/text",
        "epochs_trained": 1,
    }
    checkpoint.save(root / "gan" / "generator.pt", state)
    return root


def make_bundle(folder: Path, seed: int = 0, output: str = "direct", closed: bool = False) -> Path:
    """A self-contained bundle folder (generator.pt + text/); output and closed as for make_models."""
    from sisgan.inference import write_bundle

    models = make_models(folder.parent / f".{folder.name}-models", seed, output, closed)
    return write_bundle(folder, models / "gan" / "generator.pt", models / "text")


def photo(width: int = 50, height: int = 30, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A random image of any size and mode (not square, so the centre crop is exercised)."""
    arr = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def b64(image: Image.Image, fmt: str = "PNG") -> str:
    return base64.b64encode(encoded(image, fmt)).decode("ascii")


def huge_png(width: int = 13_000, height: int = 13_000) -> bytes:
    """A PNG whose header announces width x height RGB pixels, with one row of data: what a decompression
    bomb looks like before decoding (decoding it would fail, or take gigabytes if the data were all there)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = zlib.compress(b"\0" * (1 + 3 * width))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", row) + chunk(b"IEND", b"")


class Trap:
    """Unpickling this creates `path`: a stand-in for code hidden in a weights file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


def damage(path: Path, how: str, trap_marker: Path | None = None) -> None:
    """Replace a model file by a booby-trapped pickle, its first half, zero bytes or text."""
    data = path.read_bytes()
    if how == "trap":
        import torch

        torch.save({"generator": Trap(trap_marker or path.with_suffix(".pwned"))}, path)
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_text("not a model file at all\n")
    else:
        raise ValueError(how)
