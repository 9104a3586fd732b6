"""Manipulate images with a trained model: `Manipulator.load(uri).manipulate(image, text)`.

A model is a *bundle* folder: `generator.pt` (generator weights + config) and `text/` (the text encoder,
vocabulary and VSE image encoder). `load` accepts such a folder, the project's `models/` folder
(`models/gan/generator.pt` + `models/text/`), or an MLflow URI (`models:/sisgan-cub@champion`,
`runs:/<id>/model`) whose artefacts hold a bundle.

Outputs are the model's size (S x S) by default; `full_size=True` applies the model's edit to the photo at its
own resolution instead (sisgan.compositing: the centre crop the model saw is edited, the rest kept).
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

from sisgan.compositing import BLENDS, Blend, composite, view_box
from sisgan.config import GANConfig
from sisgan.data.images import center_crop, square_resize
from sisgan.errors import DataError, SisganError
from sisgan.models import Generator, generator_from_config
from sisgan.models.generator import edit_images, text_inputs
from sisgan.pixels import to_unit
from sisgan.text.model import TextModel
from sisgan.text.tokenizer import tokenize, unreadable_characters
from sisgan.train import checkpoint

GENERATOR_FILE = "generator.pt"
TEXT_DIR = "text"
# Images over this many pixels are refused before their pixels are decoded (as data.max_pixels in training):
# a small PNG can hold a 13,000 x 13,000 image that takes gigabytes once decoded.
DEFAULT_MAX_PIXELS = 50_000_000
ImageInput = Image.Image | np.ndarray | str | Path | bytes
GENERATOR_KEYS = ("generator", "gan_config", "text_dim", "load_size")


class TextWarning(UserWarning):
    """Part of a text the model skips (unknown words, unreadable characters, words past the limit)."""


class UnknownWordsWarning(TextWarning):
    """A caption has words the model's vocabulary does not know (they are read as <unk>)."""


class IgnoredTextWarning(TextWarning):
    """Characters the tokenizer cannot read (emoji, CJK, ...) or words past text.max_words were dropped."""


class ImageTooLargeError(DataError):
    """An encoded image whose header announces more pixels than the limit; nothing was decoded."""

    def __init__(self, what: str, width: int, height: int, limit: int, knob: str = "max_pixels") -> None:
        self.what, self.width, self.height, self.limit = what, width, height, limit
        super().__init__(self.describe(knob))

    def describe(self, knob: str) -> str:
        """The one-line message, naming the setting that raises the limit where the caller has it."""
        return (
            f"{self.what} is {self.width}x{self.height} = {self.width * self.height:,} pixels, over the "
            f"limit of {self.limit:,} pixels ({knob}); downscale it, or raise {knob} if the memory is there."
        )


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


def _is_mlflow_uri(text: str) -> bool:
    return "://" in text or text.startswith(("models:/", "runs:/"))


def _resolve(uri: str | Path) -> Path:
    """A local folder for a model URI (MLflow URIs are downloaded to the local artefact cache)."""
    text = str(uri)
    if not _is_mlflow_uri(text):
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


def load_image(source: ImageInput, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Any supported input (PIL image, HWC uint8 array, path, encoded bytes) as an RGB PIL image.

    Encoded images (paths, bytes) over max_pixels raise ImageTooLargeError after reading only the header;
    None = no limit beyond Pillow's own decompression-bomb check.
    """
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim != 3 or source.shape[-1] not in (3, 4):
            raise DataError(f"image array must be uint8 [H, W, 3], got {source.dtype} {source.shape}.")
        image = Image.fromarray(source)
    else:
        try:
            data = source if isinstance(source, bytes) else Path(source).read_bytes()
            with warnings.catch_warnings():
                # Pillow warns past 89 M pixels before refusing at 179 M; the limit below speaks instead.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
            what = "the given image" if isinstance(source, bytes) else f"image {source}"
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise ImageTooLargeError(what, image.width, image.height, max_pixels)
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


def _load_generator(path: Path, remedy: str) -> tuple[Generator, int]:
    """(generator, stored image size) from generator.pt; every failure is one DataError ending in remedy."""
    from sisgan.errors import ConfigError

    state = checkpoint.load_weights(path, remedy, what="generator file")
    if not isinstance(state, dict) or any(k not in state for k in GENERATOR_KEYS):
        raise DataError(f"generator file {path} is not a sisgan generator (no config or weights); {remedy}.")
    try:
        cfg = GANConfig.from_dict(state["gan_config"])
        g = generator_from_config(cfg, int(state["text_dim"]), False, int(state.get("vocab_size", 0)))
        g.load_state_dict(state["generator"])
    except ConfigError as e:
        raise DataError(
            f"generator file {path} holds a config this version cannot read ({e}); {remedy}."
        ) from None
    except (RuntimeError, TypeError, ValueError, AttributeError):
        raise DataError(
            f"generator file {path} does not fit its own config (shapes or layers); {remedy}."
        ) from None
    return g, int(state["load_size"])


class Manipulator:
    """A trained SISGAN generator with its frozen text encoder, ready to edit images by text."""

    def __init__(
        self,
        generator: Generator,
        text_model: TextModel,
        load_size: int,
        device: str = "cpu",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.generator = generator.to(device).eval()
        self.text_model = text_model.to(device).eval()
        self.load_size = load_size
        self.image_size = generator.image_size
        self.device = torch.device(device)
        self.max_pixels = max_pixels

    @classmethod
    def load(
        cls, uri: str | Path, device: str = "cpu", max_pixels: int | None = DEFAULT_MAX_PIXELS
    ) -> Manipulator:
        """A model from a bundle folder, the project's models/ folder or an MLflow URI.

        max_pixels: encoded images with more pixels are refused before decoding (None = no limit).
        A missing, damaged or unsafe model file is one DataError naming the file and what to do.
        """
        gen_file, text_dir = _bundle_paths(_resolve(uri))
        if _is_mlflow_uri(str(uri)):
            gen_remedy = text_remedy = (
                f"the artefacts of {uri} are damaged: load another version, or delete this one from the "
                "registry and register the model again"
            )
        elif gen_file.parent.name == "gan":  # the project's models/ folder, which DVC can restore
            gen_remedy = "restore it with `dvc checkout models/gan` or retrain with `dvc repro train_gan`"
            text_remedy = (
                "restore it with `dvc checkout models/text` or rebuild it (`dvc repro pretrain_text`)"
            )
        else:
            gen_remedy = text_remedy = (
                "replace the model folder with a good copy, or load a registered model (models:/NAME@ALIAS)"
            )
        g, load_size = _load_generator(gen_file, gen_remedy)
        return cls(g, TextModel.load(text_dir, remedy=text_remedy), load_size, device, max_pixels)

    # Section: pre/post-processing.

    def source(self, image: ImageInput) -> np.ndarray:
        """The image as the model sees it: centre square, resized to the stored size, centre crop (as the
        evaluation does): [S, S, 3] uint8."""
        return self._view(load_image(image, self.max_pixels))

    def _view(self, image: Image.Image) -> np.ndarray:
        return np.ascontiguousarray(center_crop(square_resize(image, self.load_size), self.image_size))

    def text_warnings(self, text: str) -> list[tuple[type[TextWarning], str]]:
        """What of `text` the model will not read, as (warning class, message) pairs; [] = all of it."""
        vocab = self.text_model.vocab
        found: list[tuple[type[TextWarning], str]] = []
        dropped = " ".join(unreadable_characters(text))
        if dropped and not tokenize(text, vocab.max_words):
            why = "it reads English words in Latin letters, so the output follows an empty description"
            found.append((IgnoredTextWarning, f"the text has no word this model can read ({dropped}); {why}"))
        elif dropped:
            found.append((IgnoredTextWarning, f"characters this model cannot read were ignored: {dropped}"))
        cut = vocab.ignored_words(text)
        if cut:
            n, kept = vocab.max_words + len(cut), vocab.max_words
            message = f"the text has {n} words; this model reads the first {kept} (text.max_words)"
            found.append((IgnoredTextWarning, f"{message} and ignored the rest, from {cut[0]!r} on"))
        unknown = ", ".join(sorted(set(vocab.unknown_words(text))))
        if unknown:
            found.append((UnknownWordsWarning, f"words unknown to this model (read as <unk>): {unknown}"))
        return found

    def check_text(self, text: str) -> None:
        """Raise DataError for a non-string or empty text; warn (TextWarning) about what is not read."""
        if not isinstance(text, str):
            raise DataError(
                f"the text must be a string (a description of the target), got {type(text).__name__}."
            )
        if not text.strip():
            raise DataError("the text is empty; describe the target, e.g. 'a bird with a red head'.")
        for category, message in self.text_warnings(text):
            warnings.warn(message, category, stacklevel=3)

    # Section: manipulation.

    def manipulate_arrays(self, sources: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """sources [B, S, S, 3] uint8 (see `source`) + B texts -> edited [B, S, S, 3] uint8 (ε = 0)."""
        return edit_images(
            self.generator, sources, *text_inputs(self.generator, self.text_model, list(texts))
        )

    def check_blend(self, blend: str) -> None:
        """DataError for a blend this model cannot do (unknown, or `layers` without a mask)."""
        if blend not in BLENDS:
            raise DataError(f"blend {blend!r} is unknown; choose one of {', '.join(BLENDS)}.")
        if blend == "layers" and not self.generator.masked:
            raise DataError(
                "blend 'layers' needs a generator with a mask (gan.output mask or paint); this one is "
                f"{self.generator.output!r}: use blend 'change'."
            )

    @torch.no_grad()
    def edit_layers(self, sources: np.ndarray, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """A mask or paint generator's two layers for sources [B, S, S, 3] uint8 + B texts: (mask [B, S, S]
        in [0, 1], repaint [B, S, S, 3] in 0-255), float32; manipulate_arrays blends them (ε = 0)."""
        g = self.generator
        self.check_blend("layers")
        phi, *per_word = text_inputs(g, self.text_model, list(texts))
        masks, paints = [], []
        for i in range(0, len(sources), 128):
            rows = slice(i, i + 128)
            x = to_unit(sources[rows], self.device)
            noise = torch.zeros(len(x), g.cond_dim, device=self.device)
            words = (t[rows].to(self.device) for t in per_word)
            mask, paint = g.layers(x, phi[rows].to(self.device), noise, *words)
            masks.append(mask[:, 0].float().cpu().numpy())
            paints.append(((paint.float().clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(masks), np.concatenate(paints)

    def manipulate(
        self, image: ImageInput, text: str, full_size: bool = False, blend: Blend = "change"
    ) -> Image.Image:
        """Edit one image so that it matches `text`; returns an S x S RGB image, or with full_size the photo
        at its own size with the edit applied (see manipulate_batch)."""
        return self.manipulate_batch([image], [text], full_size, blend)[0]

    def manipulate_batch(
        self,
        images: Sequence[ImageInput],
        texts: Sequence[str],
        full_size: bool = False,
        blend: Blend = "change",
    ) -> list[Image.Image]:
        """Pairs (images[i], texts[i]); one image with several texts: pass it several times.

        full_size: each output is the photo at its own size (after its EXIF rotation), edited where the model
        saw it (its centre crop) and untouched elsewhere; blend says how the model-size edit is applied
        ("change": output - source upsampled and added; "layers": the mask and repaint upsampled and
        blended, mask and paint generators only; sisgan.compositing).
        """
        if len(images) != len(texts):
            raise DataError(f"got {len(images)} images and {len(texts)} texts; pass one text per image.")
        if full_size:
            self.check_blend(blend)
        for t in texts:
            self.check_text(t)
        photos = [load_image(im, self.max_pixels) for im in images]
        sources = np.stack([self._view(p) for p in photos])
        if not full_size:
            return [Image.fromarray(a) for a in self.manipulate_arrays(sources, texts)]
        if blend == "layers":
            masks, paints = self.edit_layers(sources, texts)
            edits = [{"mask": m, "repaint": p} for m, p in zip(masks, paints, strict=True)]
        else:
            change = self.manipulate_arrays(sources, texts).astype(np.float32) - sources
            edits = [{"change": c} for c in change]
        return [
            Image.fromarray(
                composite(np.asarray(p), view_box(*p.size, self.load_size, self.image_size), **edit)
            )
            for p, edit in zip(photos, edits, strict=True)
        ]

    def info(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "load_size": self.load_size,
            "width": self.generator.width,
            "vocabulary": len(self.text_model.vocab),
            "device": str(self.device),
        }


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IgnoredTextWarning",
    "ImageTooLargeError",
    "Manipulator",
    "SisganError",
    "TextWarning",
    "UnknownWordsWarning",
    "load_image",
    "write_bundle",
]
