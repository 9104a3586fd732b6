"""Typed, frozen configs: one dataclass per params.yaml section.

The library never reads YAML; `pipeline/` loads params.yaml and builds these with `from_dict`, which
rejects unknown keys and wrong types with a message naming the section, the key and the fix.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self, get_args, get_origin

from sisgan.errors import ConfigError

# A number as text: YAML 1.1 (PyYAML) reads 1e-3 and 2E-4 as strings, YAML 1.2 (DVC) as floats.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(section: str, key: str, value: Any, tp: Any) -> Any:
    """Check `value` against annotation `tp`; returns the value (lists become tuples for tuple fields)."""
    origin = get_origin(tp)
    where = f"params.yaml: {section}.{key}"
    if origin in (typing.Union, types.UnionType):
        opts = get_args(tp)
        if value is None and type(None) in opts:
            return None
        errors = []
        for opt in opts:
            if opt is type(None):
                continue
            try:
                return _coerce(section, key, value, opt)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where} = {value!r} is not a valid {' or '.join(map(_type_name, opts))}.")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where} = {value!r}; choose one of {list(get_args(tp))}.")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}.")
        (item_tp, *_rest) = get_args(tp)
        return tuple(_coerce(section, key, v, item_tp) for v in value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {value!r}.")
        return dict(value)
    if tp is float:
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}.")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}.")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}.")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}.")
        return value
    return value


@dataclasses.dataclass(frozen=True)
class Config:
    """Base for section configs: strict construction from a mapping and a plain-dict view."""

    SECTION: ClassVar[str] = "?"

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> Self:
        values = dict(values or {})
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(
                f"params.yaml: unknown key(s) {unknown} in section '{cls.SECTION}'; valid keys are {names}."
            )
        kwargs = {k: _coerce(cls.SECTION, k, v, hints[k]) for k, v in values.items()}
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def _require(self, ok: bool, key: str, message: str) -> None:
        if not ok:
            value = getattr(self, key)
            raise ConfigError(f"params.yaml: {self.SECTION}.{key} = {value!r}: {message}")


DATASETS = ("synth-birds", "cub", "flowers")


@dataclasses.dataclass(frozen=True)
class DataConfig(Config):
    """`data:` — where raw data and shards live and how images are stored."""

    SECTION: ClassVar[str] = "data"
    root: str = "data"
    archives: str | None = None  # a folder with already-downloaded archives (the offline path)
    extracted: str | None = None  # a folder holding the dataset already extracted (read in place, not copied)
    load_size: int = 74  # stored square size; training crops image_size out of it
    image_format: Literal["raw", "png"] = "raw"
    shard_rows: int = 1024
    max_pixels: int = 50_000_000  # larger images are rejected (decompression bombs, corrupt headers)
    workers: int = 0  # processes for preprocessing; 0 = one per core
    verify_counts: bool = True  # check the published split sizes (full archives, or an extracted folder)

    def __post_init__(self) -> None:
        self._require(
            self.archives is None or self.extracted is None,
            "extracted",
            "set data.archives (a folder of archives) or data.extracted (an extracted folder), not both.",
        )
        self._require(self.load_size >= 16, "load_size", "must be at least 16 pixels.")
        self._require(self.shard_rows >= 1, "shard_rows", "must be at least 1.")
        self._require(self.max_pixels >= 256, "max_pixels", "must be at least 256.")
        self._require(self.workers >= 0, "workers", "must be 0 (all cores) or a positive count.")


@dataclasses.dataclass(frozen=True)
class SynthConfig(Config):
    """`synth:` — the embedded procedural dataset (synth-birds)."""

    SECTION: ClassVar[str] = "synth"
    n_images: int = 4000
    n_classes: int = 200
    test_classes: int = 50
    captions_per_image: int = 10
    min_named: int = 2  # each caption names between min_named and max_named attributes
    max_named: int = 4

    def __post_init__(self) -> None:
        self._require(self.n_images >= 2, "n_images", "must be at least 2.")
        self._require(self.n_classes >= 2, "n_classes", "must be at least 2 (train and test classes).")
        self._require(
            0 < self.test_classes < self.n_classes,
            "test_classes",
            f"must be between 1 and n_classes - 1 = {self.n_classes - 1}.",
        )
        self._require(self.captions_per_image >= 1, "captions_per_image", "must be at least 1.")
        self._require(1 <= self.min_named <= 4, "min_named", "must be between 1 and 4.")
        self._require(self.min_named <= self.max_named <= 4, "max_named", "must be between min_named and 4.")


def check_dataset(name: object) -> str:
    if name not in DATASETS:
        raise ConfigError(f"params.yaml: dataset = {name!r} is unknown; choose one of {list(DATASETS)}.")
    return str(name)


@dataclasses.dataclass(frozen=True)
class TextConfig(Config):
    """`text:` — tokenizer, text encoder φ(t) and its visual-semantic pretraining."""

    SECTION: ClassVar[str] = "text"
    max_words: int = 50
    min_count: int = 1  # words rarer than this in the training captions become <unk>
    embed_dim: int = 300
    hidden_dim: int = 300  # = the dimension of φ(t)
    word_vectors: str | None = None  # local fastText/GloVe .vec file to initialise the embeddings
    image_encoder: Literal["cnn", "vgg16"] = "cnn"
    cnn_width: int = 32
    vgg_weights: str | None = None  # local torchvision vgg16 ImageNet state_dict (image_encoder: vgg16)
    image_size: int = 64  # crop size fed to the image encoder
    margin: float = 0.2
    lr: float = 2e-4
    batch_size: int = 64
    epochs: int = 20
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        self._require(self.max_words >= 1, "max_words", "must be at least 1.")
        self._require(self.min_count >= 1, "min_count", "must be at least 1.")
        self._require(self.embed_dim >= 1, "embed_dim", "must be positive.")
        self._require(self.hidden_dim >= 1, "hidden_dim", "must be positive.")
        self._require(self.cnn_width >= 1, "cnn_width", "must be positive.")
        self._require(self.image_size >= 16, "image_size", "must be at least 16.")
        self._require(self.margin > 0, "margin", "must be positive.")
        self._require(self.lr > 0, "lr", "must be positive.")
        self._require(self.batch_size >= 2, "batch_size", "must be at least 2 (the loss needs negatives).")
        self._require(self.epochs >= 1, "epochs", "must be at least 1.")
        check_device(self.device, f"{self.SECTION}.device")


@dataclasses.dataclass(frozen=True)
class TrackingConfig(Config):
    """`tracking:` — MLflow."""

    SECTION: ClassVar[str] = "tracking"
    enabled: bool = True
    experiment: str | None = None  # default: sisgan-<dataset>


def check_device(device: str, where: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", device):
        raise ConfigError(f"params.yaml: {where} = {device!r}; use auto, cpu, cuda or cuda:N.")
    return device


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; an explicit 'cuda' without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} was asked for but no CUDA GPU is visible; use device: auto or cpu."
        )
    return device


@dataclasses.dataclass(frozen=True)
class GANConfig(Config):
    """`gan:` — the SISGAN generator/discriminator, the recipe and the speed switches."""

    SECTION: ClassVar[str] = "gan"
    # Model.
    image_size: int = 64  # multiple of 16; random crops of this size from data.load_size
    width: float = 1.0  # channel multiplier; 1.0 = the paper's layer shapes
    encoder: Literal["conv", "vgg16bn"] = "conv"
    vgg_weights: str | None = None  # local torchvision vgg16_bn ImageNet state_dict (encoder: vgg16bn)
    # Recipe (the paper's defaults).
    batch_size: int = 64  # global batch; divided among processes under torchrun
    epochs: int = 600
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay: float = 0.5
    lr_decay_every: int = 100  # epochs
    kl_weight: float = 1.0
    flip: bool = True
    # Improvements over the paper (off in the paper profile).
    recon_weight: float = 0.0  # L1 reconstruction on the matching-text half of the batch (TAGAN-style)
    swap_weight: float = 0.0  # L2 of G(x, colour-swapped t) vs x recoloured alike (sisgan.train.swaps)
    swap_variants: int = 4  # swapped caption + recoloured image pairs per training image
    swap_colours: Literal["flat", "shaded"] = "flat"  # the pairs' colour model: flat parts | shaded photos
    output: Literal["direct", "mask", "paint"] = "direct"  # mask/paint: a repaint blended into the source
    # "paint" only: cross-entropy pulling each object pixel's word attention onto the caption's word for the
    # pixel's colour in the edit target (sisgan.losses.grounding_loss).
    ground_weight: float = 0.0
    # With the swap pairs: L2 against the edit target over the object, every colour region weighing alike
    # (sisgan.losses.part_loss), so a beak counts as much as the body, changed or kept.
    part_weight: float = 0.0
    attention: bool = False  # image positions read the caption's words (sisgan.models.attention)
    conditioning: Literal["concat", "film"] = "concat"  # "film": the text also modulates each residual block
    # Speed (same maths; each measured to help, benchmarks/RESULTS.md).
    bf16: bool = True  # bf16 autocast on CUDA, and on CPUs with native bf16 (AVX512-BF16 or AMX)
    channels_last: bool = True  # NHWC activations and weights (CUDA and CPU)
    fused_adam: bool = True  # one fused Adam kernel per parameter group, on CUDA
    cuda_graph: bool = True  # the whole step captured as one CUDA graph (CUDA, one process)
    compile: bool = False  # torch.compile the networks (inside the graph when cuda_graph is on)
    # Bookkeeping.
    checkpoint_every: int = 1  # epochs
    sample_every: int = 1  # epochs; the sample grid
    samples: int = 8  # source images in the sample grid
    device: str = "auto"

    @property
    def reads_words(self) -> bool:
        """Whether the generator reads the caption's token ids (gan.attention or gan.output: paint)."""
        return self.attention or self.output == "paint"

    @property
    def reads_colour_classes(self) -> bool:
        """Whether a loss term reads the swap pairs' colour classes (gan.ground_weight, gan.part_weight)."""
        return bool(self.ground_weight or self.part_weight)

    def __post_init__(self) -> None:
        self._require(
            self.image_size >= 16 and self.image_size % 16 == 0,
            "image_size",
            "must be a multiple of 16 (16, 32, 48, 64, ...).",
        )
        self._require(self.width > 0, "width", "must be positive (1.0 = the paper's channels).")
        self._require(
            self.batch_size >= 2, "batch_size", "must be at least 2 (mismatching text needs a pair)."
        )
        self._require(self.epochs >= 1, "epochs", "must be at least 1.")
        self._require(self.lr > 0, "lr", "must be positive.")
        self._require(0 <= self.beta1 < 1, "beta1", "must be in [0, 1).")
        self._require(0 <= self.beta2 < 1, "beta2", "must be in [0, 1).")
        self._require(0 < self.lr_decay <= 1, "lr_decay", "must be in (0, 1].")
        self._require(self.lr_decay_every >= 1, "lr_decay_every", "must be at least 1 epoch.")
        self._require(self.kl_weight >= 0, "kl_weight", "must be >= 0.")
        self._require(self.recon_weight >= 0, "recon_weight", "must be >= 0.")
        self._require(self.swap_weight >= 0, "swap_weight", "must be >= 0.")
        self._require(self.swap_variants >= 1, "swap_variants", "must be at least 1.")
        self._require(self.ground_weight >= 0, "ground_weight", "must be >= 0.")
        self._require(
            not self.ground_weight or (self.output == "paint" and self.swap_weight > 0),
            "ground_weight",
            "needs output: paint and swap_weight > 0 (it grounds the swap pairs' colour words); set it to 0.",
        )
        self._require(self.part_weight >= 0, "part_weight", "must be >= 0.")
        self._require(
            not self.part_weight or self.swap_weight > 0,
            "part_weight",
            "needs swap_weight > 0 (it reads the swap pairs' targets); set it to 0.",
        )
        self._require(self.checkpoint_every >= 1, "checkpoint_every", "must be at least 1 epoch.")
        self._require(self.sample_every >= 1, "sample_every", "must be at least 1 epoch.")
        self._require(self.samples >= 1, "samples", "must be at least 1.")
        check_device(self.device, f"{self.SECTION}.device")


@dataclasses.dataclass(frozen=True)
class EvalConfig(Config):
    """`evaluate:` — manipulation metrics on the test split (unseen classes)."""

    SECTION: ClassVar[str] = "evaluate"
    pairs_per_image: int = 2  # target captions (of other test images) per source image
    max_images: int = 0  # 0 = the whole test split
    metrics: tuple[str, ...] = (
        *("counterfactual", "manipulative_precision", "text_following", "colour_following", "keep"),
        *("retrieval", "fid"),
    )
    inception_weights: str | None = None  # local torchvision inception_v3 weights; FID is skipped without
    tint_strength: float = 0.5  # the tint row: share of the way each pixel's chroma moves to the named colour
    colour_min_rise: float = 0.05  # a named colour "rises" when its share of the object grows by this much
    grid_rows: int = 8
    batch_size: int = 128
    device: str = "auto"

    def __post_init__(self) -> None:
        self._require(self.pairs_per_image >= 1, "pairs_per_image", "must be at least 1.")
        self._require(self.max_images >= 0, "max_images", "must be 0 (all) or a positive count.")
        self._require(self.grid_rows >= 1, "grid_rows", "must be at least 1.")
        self._require(self.batch_size >= 1, "batch_size", "must be at least 1.")
        self._require(0 < self.tint_strength <= 1, "tint_strength", "must be in (0, 1].")
        self._require(0 < self.colour_min_rise <= 1, "colour_min_rise", "must be in (0, 1].")
        check_device(self.device, f"{self.SECTION}.device")


@dataclasses.dataclass(frozen=True)
class RegisterConfig(Config):
    """`register:` — the MLflow registry entry of the trained model and when `champion` moves."""

    SECTION: ClassVar[str] = "register"
    model_name: str | None = None  # default: sisgan-<dataset>
    # A new version takes `champion` only when its primary metric beats the champion's by more than this
    # (in the metric's own units), so evaluation noise does not flip the alias back and forth.
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if self.model_name is not None:
            self._require(
                re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.model_name) is not None,
                "model_name",
                "use letters, digits, '.', '_' and '-' (it becomes models:/<name>@champion).",
            )
        self._require(self.min_delta >= 0, "min_delta", "must be >= 0.")


# Section: profiles.

# The paper's recipe (DESIGN §4: Dong et al. 2017 and its reference code) is what the configs default to.
# The paper profile is params.yaml with these keys reset to their defaults; everything else (paths, devices,
# speed switches, bookkeeping, optional pretrained weights) stays as params.yaml has it. This is the profile's
# one definition: `make repro-paper`, every stage's `--profile paper`, the GPU script and the benchmarks read
# it. The embedded default is params.yaml itself.
PAPER_RECIPE: dict[type[Config], tuple[str, ...]] = {
    DataConfig: ("load_size",),
    TextConfig: ("embed_dim", "hidden_dim", "image_size", "margin", "lr", "batch_size"),
    GANConfig: (
        *("image_size", "width", "batch_size", "epochs", "lr", "beta1", "beta2", "lr_decay"),
        *("lr_decay_every", "kl_weight", "flip", "recon_weight", "swap_weight", "output", "conditioning"),
        *("attention", "ground_weight", "part_weight"),
    ),
}
# Real photos on a CPU (docs/datasets.md, "Settings for real photos"; measured in benchmarks/RESULTS.md): the
# embedded default's 37 -> 32 crops, a text encoder that reaches 10x chance recall@10 on Oxford-102 in 30
# epochs, the shaded colour model for the swap pairs, and the decoder's repaint under the mask (the flat
# word colours of "paint" cannot shade a petal). Combine with `dataset` and the data's location.
PHOTOS: dict[str, Any] = {
    "data.load_size": 37,
    "text.image_size": 32,
    "text.min_count": 3,
    "text.epochs": 30,
    "gan.swap_colours": "shaded",
    "gan.output": "mask",
    "gan.ground_weight": 0.0,  # grounds the "paint" output's word attention, which the mask output has not
    "gan.part_weight": 0.0,  # measured on synth-birds' flat parts only, not yet on shaded photos
    # A lighter hold on the matching half leaves the mask freer to open: colour rise 0.35 (10) -> 0.43 at 6
    # epochs on Oxford-102 (1: 0.41; benchmarks/RESULTS.md, "What limits the colour rise").
    "gan.recon_weight": 3.0,
    # The schedule the photo runs were measured with (synth-birds' shorter one was tuned on synth-birds only).
    "gan.epochs": 30,
    "gan.lr_decay": 0.5,
    "gan.lr_decay_every": 100,
}
PROFILES = ("paper", "photos")


def profile_values(name: str) -> dict[str, Any]:
    """{"section.key": value} that a profile sets on top of params.yaml."""
    if name not in PROFILES:
        raise ConfigError(f"profile {name!r} is unknown; choose one of {list(PROFILES)}.")
    if name == "photos":
        return dict(PHOTOS)
    return {f"{cls.SECTION}.{key}": getattr(cls(), key) for cls, keys in PAPER_RECIPE.items() for key in keys}


def apply_profile(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A copy of params (a params.yaml mapping) with the profile's values set."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in params.items()}
    for dotted, value in profile_values(name).items():
        section, key = dotted.split(".")
        out.setdefault(section, {})[key] = list(value) if isinstance(value, tuple) else value
    return out


def check_crops(data: DataConfig, text: TextConfig, gan: GANConfig) -> None:
    """Training crops must fit the stored images: known from params alone, so checked before any work."""
    for section, size in (("text", text.image_size), ("gan", gan.image_size)):
        if size > data.load_size:
            raise ConfigError(
                f"params.yaml: {section}.image_size = {size} is larger than the stored images "
                f"(data.load_size = {data.load_size}); lower it or raise data.load_size."
            )
