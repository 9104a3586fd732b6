"""Manipulate images with a trained model: `Manipulator.load(uri).manipulate(image, text)`.

A model is a *bundle* folder: `generator.pt` (generator weights + config) and `text/` (the text encoder,
vocabulary and VSE image encoder). `load` accepts such a folder, the project's `models/` folder
(`models/gan/generator.pt` + `models/text/`), or an MLflow URI (`models:/sisgan-cub@champion`,
`runs:/<id>/model`) whose artefacts hold a bundle.
"""

from __future__ import annotations

import io
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from sisgan.config import GANConfig
from sisgan.data.images import center_crop, square_resize
from sisgan.errors import DataError, SisganError
from sisgan.models import Generator, generator_from_config
from sisgan.text.model import TextModel
from sisgan.train import checkpoint

GENERATOR_FILE = "generator.pt"
TEXT_DIR = "text"
ImageInput = Image.Image | np.ndarray | str | Path | bytes


class UnknownWordsWarning(UserWarning):
    """A caption has words the model's vocabulary does not know (they are read as <unk>)."""


def write_bundle(folder: str | Path, generator_file: str | Path, text_dir: str | Path) -> Path:
    """Copy a generator file and a text-model folder into one self-contained bundle folder."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copy(generator_file, folder / GENERATOR_FILE)
    shutil.copytree(text_dir, folder / TEXT_DIR)
    return folder


def _bundle_paths(path: Path) -> tuple[Path, Path]:
    """(generator.pt, text folder) inside a bundle or a project `models/` folder."""
    for gen, text in (
        (path / GENERATOR_FILE, path / TEXT_DIR),
        (path / "gan" / GENERATOR_FILE, path / TEXT_DIR),
    ):
        if gen.is_file() and text.is_dir():
            return gen, text
    raise DataError(
        f"{path} holds no sisgan model (expected generator.pt and text/, or gan/generator.pt and text/); "
        "pass a model folder, the project's models/ folder, or an MLflow URI (models:/sisgan-cub@champion)."
    )


def _resolve(uri: str | Path) -> Path:
    """A local folder for a model URI (MLflow URIs are downloaded to the local artefact cache)."""
    text = str(uri)
    if "://" not in text and not text.startswith(("models:/", "runs:/")):
        path = Path(text)
        if not path.exists():
            raise DataError(
                f"model {text!r} not found: no such folder; pass a model folder or an MLflow URI."
            )
        return path
    try:
        import mlflow
    except ImportError:
        raise DataError(
            f"model URI {text!r} needs mlflow, which is not installed here; pass a local folder."
        ) from None
    from sisgan.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=text))
    except Exception as e:  # mlflow raises several types for unknown names/aliases/runs
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(
            f"model URI {text!r} could not be resolved ({first}); check the name and alias."
        ) from None
    # A pyfunc model keeps the bundle under artifacts/<name>/.
    for candidate in (local, *sorted(local.glob("artifacts/*"))):
        try:
            _bundle_paths(candidate)
            return candidate
        except DataError:
            continue
    raise DataError(f"model URI {text!r} does not hold a sisgan bundle.")


def load_image(source: ImageInput) -> Image.Image:
    """Any supported input (PIL image, HWC uint8 array, path, encoded bytes) as an RGB PIL image."""
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim != 3 or source.shape[-1] not in (3, 4):
            raise DataError(f"image array must be uint8 [H, W, 3], got {source.dtype} {source.shape}.")
        image = Image.fromarray(source)
    else:
        try:
            data = source if isinstance(source, bytes) else Path(source).read_bytes()
            image = Image.open(io.BytesIO(data))
            image.load()
        except FileNotFoundError:
            raise DataError(f"image {source} not found.") from None
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
            what = "the given bytes" if isinstance(source, bytes) else str(source)
            # UnidentifiedImageError's text is "cannot identify image file <_io.BytesIO object at 0x...>".
            why = "not a known image format" if isinstance(e, UnidentifiedImageError) else str(e)
            raise DataError(f"cannot read {what} as an image ({why}); use a JPEG, PNG or WebP.") from None
        image = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF
    if image.mode.startswith("I"):  # 16/32-bit greyscale (16-bit PNG): convert("RGB") would clip at 255
        scale = 257.0 if image.mode.startswith("I;16") or np.asarray(image).max() > 255 else 1.0
        image = Image.fromarray((np.asarray(image, np.float32) / scale).clip(0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


class Manipulator:
    """A trained SISGAN generator with its frozen text encoder, ready to edit images by text."""

    def __init__(
        self, generator: Generator, text_model: TextModel, load_size: int, device: str = "cpu"
    ) -> None:
        self.generator = generator.to(device).eval()
        self.text_model = text_model.to(device).eval()
        self.load_size = load_size
        self.image_size = generator.image_size
        self.device = torch.device(device)

    @classmethod
    def load(cls, uri: str | Path, device: str = "cpu") -> Manipulator:
        gen_file, text_dir = _bundle_paths(_resolve(uri))
        state = checkpoint.load(gen_file, "cpu")
        cfg = GANConfig.from_dict(state["gan_config"])
        g = generator_from_config(cfg, int(state["text_dim"]), load_vgg=False)
        g.load_state_dict(state["generator"])
        return cls(g, TextModel.load(text_dir), int(state["load_size"]), device)

    # Section: pre/post-processing.

    def preprocess(self, image: ImageInput) -> torch.Tensor:
        """Image -> [3, S, S] in [-1, 1]: centre square, resize to the stored size, centre crop (as eval)."""
        arr = center_crop(square_resize(load_image(image), self.load_size), self.image_size)  # [S, S, 3]
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float() / 127.5 - 1

    @staticmethod
    def postprocess(batch: torch.Tensor) -> list[Image.Image]:
        arr = ((batch.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(a) for a in arr]

    def check_text(self, text: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise DataError("the text is empty; describe the target, e.g. 'a bird with a red head'.")
        unknown = self.text_model.vocab.unknown_words(text)
        if unknown:
            warnings.warn(
                f"words unknown to this model (read as <unk>): {', '.join(sorted(set(unknown)))}",
                UnknownWordsWarning,
                stacklevel=3,
            )

    # Section: manipulation.

    @torch.no_grad()
    def manipulate_tensors(self, images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """images [B, 3, S, S] in [-1, 1] + B texts -> [B, 3, S, S] in [-1, 1] (ε = 0: the mean condition)."""
        phi = self.text_model.encode_texts(list(texts)).to(self.device)
        noise = torch.zeros(len(images), self.generator.cond_dim, device=self.device)
        out, _, _ = self.generator(images.to(self.device), phi, noise)
        return out

    def manipulate(self, image: ImageInput, text: str) -> Image.Image:
        """Edit one image so that it matches `text`; returns an S x S RGB image."""
        return self.manipulate_batch([image], [text])[0]

    def manipulate_batch(self, images: Sequence[ImageInput], texts: Sequence[str]) -> list[Image.Image]:
        """Pairs (images[i], texts[i]); one image with several texts: pass it several times."""
        if len(images) != len(texts):
            raise DataError(f"got {len(images)} images and {len(texts)} texts; pass one text per image.")
        for t in texts:
            self.check_text(t)
        batch = torch.stack([self.preprocess(im) for im in images])
        return self.postprocess(self.manipulate_tensors(batch, texts))

    def info(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "load_size": self.load_size,
            "width": self.generator.width,
            "vocabulary": len(self.text_model.vocab),
            "device": str(self.device),
        }


__all__ = ["Manipulator", "SisganError", "UnknownWordsWarning", "load_image", "write_bundle"]
