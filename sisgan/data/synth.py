"""synth-birds: procedurally rendered birds with exact ground truth for manipulation.

Every pixel is explained by a `Scene`: text-irrelevant factors (sky gradient, branch, position, scale,
tilt, facing) and four text-relevant colour attributes (body, wing, head, beak). Rendering the source
scene with the attributes a target caption names replaced gives the *counterfactual*: the exact image a
perfect manipulation would produce. Pure numpy, deterministic for a seed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sisgan.config import SynthConfig
from sisgan.errors import DataError

# Section: vocabulary of the world.

PARTS: tuple[str, ...] = ("body", "wing", "head", "beak")

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (210, 35, 35),
    "orange": (240, 140, 25),
    "yellow": (245, 215, 45),
    "green": (40, 160, 60),
    "blue": (40, 80, 215),
    "purple": (135, 50, 175),
    "brown": (125, 78, 35),
    "black": (28, 28, 28),
    "white": (242, 242, 242),
    "grey": (135, 135, 135),
}
COLOR_NAMES: tuple[str, ...] = tuple(PALETTE)

# Words a caption may use for a colour or a part (synonyms make the text encoder's job realistic).
COLOR_WORDS: dict[str, tuple[str, ...]] = {c: (c,) for c in COLOR_NAMES} | {
    "red": ("red", "crimson"),
    "grey": ("grey", "gray"),
    "purple": ("purple", "violet"),
}
PART_WORDS: dict[str, tuple[str, ...]] = {
    "body": ("body", "belly"),
    "wing": ("wings", "wing feathers"),
    "head": ("head", "crown"),
    "beak": ("beak", "bill"),
}

# Render labels, painted in this order (later labels cover earlier ones).
_BG, _BRANCH, _LEGS, _TAIL, _BODY, _WING, _HEAD, _BEAK, _EYE = range(9)
# Which labels make up each text-relevant part (the tail is body-coloured).
PART_LABELS: dict[str, tuple[int, ...]] = {
    "body": (_TAIL, _BODY),
    "wing": (_WING,),
    "head": (_HEAD,),
    "beak": (_BEAK,),
}
_LEG_RGB = (70, 55, 45)
_EYE_RGB = (10, 10, 10)
_SUPERSAMPLE = 2  # k x k samples per pixel; masks are "any sample of the part", so edits stay inside them


@dataclasses.dataclass(frozen=True)
class Scene:
    """Everything needed to render one image. Geometry is in canvas fractions (0..1, y down)."""

    sky_top: tuple[int, int, int]
    sky_bottom: tuple[int, int, int]
    branch_rgb: tuple[int, int, int]
    branch_angle: float  # degrees
    branch_width: float
    x: float
    y: float
    scale: float  # bird half-length as a fraction of the canvas
    tilt: float  # degrees, positive = nose up
    facing: int  # +1 right, -1 left
    body: str
    wing: str
    head: str
    beak: str

    @property
    def attributes(self) -> dict[str, str]:
        return {p: getattr(self, p) for p in PARTS}

    def with_attributes(self, attrs: Mapping[str, str | None]) -> Scene:
        """The same scene with the named attributes changed (None/missing = keep)."""
        changes = {p: c for p, c in attrs.items() if c is not None}
        for part, colour in changes.items():
            if part not in PARTS or colour not in PALETTE:
                raise DataError(f"unknown attribute {part}={colour!r}; parts are {PARTS}, colours {COLOR_NAMES}.")
        return dataclasses.replace(self, **changes)

    def to_record(self) -> dict[str, Any]:
        rec = dataclasses.asdict(self)
        for key in ("sky_top", "sky_bottom", "branch_rgb"):
            rec[key] = list(rec[key])
        return rec

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> Scene:
        rec = dict(rec)
        for key in ("sky_top", "sky_bottom", "branch_rgb"):
            rec[key] = tuple(int(v) for v in rec[key])
        rec["facing"] = int(rec["facing"])
        return cls(**rec)


# Section: rendering.


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, ru: float, rv: float, rot: float = 0.0):
    du, dv = u - cu, v - cv
    if rot:
        c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
        du, dv = c * du + s * dv, -s * du + c * dv
    return (du / ru) ** 2 + (dv / rv) ** 2 <= 1.0


def _triangle(u: np.ndarray, v: np.ndarray, pts: Sequence[tuple[float, float]]) -> np.ndarray:
    (x1, y1), (x2, y2), (x3, y3) = pts

    def side(ax: float, ay: float, bx: float, by: float) -> np.ndarray:
        return (u - bx) * (ay - by) - (ax - bx) * (v - by)

    d1, d2, d3 = side(x1, y1, x2, y2), side(x2, y2, x3, y3), side(x3, y3, x1, y1)
    neg = (d1 < 0) | (d2 < 0) | (d3 < 0)
    pos = (d1 > 0) | (d2 > 0) | (d3 > 0)
    return ~(neg & pos)


def _segment(u: np.ndarray, v: np.ndarray, a: tuple[float, float], b: tuple[float, float], width: float):
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    t = np.clip(((u - ax) * dx + (v - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return (u - ax - t * dx) ** 2 + (v - ay - t * dy) ** 2 <= (width / 2) ** 2


def _label_map(scene: Scene, n: int) -> np.ndarray:
    """Label of every sample on an n x n grid: [n, n] uint8."""
    grid = (np.arange(n, dtype=np.float64) + 0.5) / n
    py, px = np.meshgrid(grid, grid, indexing="ij")
    labels = np.zeros((n, n), np.uint8)

    # Bird-local coordinates: u forward (towards the beak), v down, unit = scene.scale.
    th = math.radians(-scene.tilt)
    dx, dy = (px - scene.x) / scene.scale, (py - scene.y) / scene.scale
    u = (math.cos(th) * dx + math.sin(th) * dy) * scene.facing
    v = -math.sin(th) * dx + math.cos(th) * dy

    # The branch passes under the feet, across the whole canvas.
    foot_u, foot_v = 0.0, 0.98
    fx = scene.x + scene.scale * (math.cos(th) * foot_u * scene.facing - math.sin(th) * foot_v)
    fy = scene.y + scene.scale * (math.sin(th) * foot_u * scene.facing + math.cos(th) * foot_v)
    ba = math.radians(scene.branch_angle)
    dist = -(px - fx) * math.sin(ba) + (py - fy) * math.cos(ba)
    labels[np.abs(dist - scene.branch_width / 2) <= scene.branch_width / 2] = _BRANCH

    labels[_segment(u, v, (0.15, 0.5), (0.2, 1.0), 0.09) | _segment(u, v, (-0.2, 0.5), (-0.15, 1.0), 0.09)] = _LEGS
    labels[_triangle(u, v, [(-0.7, -0.2), (-1.6, -0.5), (-1.5, 0.12)])] = _TAIL
    labels[_ellipse(u, v, 0.0, 0.0, 1.0, 0.62)] = _BODY
    labels[_ellipse(u, v, -0.18, -0.08, 0.72, 0.34, rot=-12.0)] = _WING
    labels[_ellipse(u, v, 0.85, -0.6, 0.42, 0.42)] = _HEAD
    labels[_triangle(u, v, [(1.14, -0.74), (1.14, -0.46), (1.6, -0.57)])] = _BEAK
    labels[_ellipse(u, v, 0.98, -0.7, 0.08, 0.08)] = _EYE
    return labels


def render(scene: Scene, size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render a scene: image [size, size, 3] uint8 and a bool mask [size, size] per part in PARTS.

    A part's mask holds every pixel that any of its samples touches, so changing that part's colour
    changes pixels only inside its mask.
    """
    k = _SUPERSAMPLE
    n = size * k
    labels = _label_map(scene, n)

    # Sky: a vertical gradient; everything else is a flat colour per label.
    t = ((np.arange(n) + 0.5) / n)[:, None, None]
    rgb = (1 - t) * np.asarray(scene.sky_top, np.float64) + t * np.asarray(scene.sky_bottom, np.float64)
    rgb = np.broadcast_to(rgb, (n, n, 3)).copy()
    colours = {
        _BRANCH: scene.branch_rgb,
        _LEGS: _LEG_RGB,
        _TAIL: PALETTE[scene.body],
        _BODY: PALETTE[scene.body],
        _WING: PALETTE[scene.wing],
        _HEAD: PALETTE[scene.head],
        _BEAK: PALETTE[scene.beak],
        _EYE: _EYE_RGB,
    }
    for label, colour in colours.items():
        rgb[labels == label] = colour

    image = rgb.reshape(size, k, size, k, 3).mean(axis=(1, 3))
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    blocks = labels.reshape(size, k, size, k)
    masks = {p: np.isin(blocks, PART_LABELS[p]).any(axis=(1, 3)) for p in PARTS}
    return image, masks


def core_masks(scene: Scene, size: int) -> dict[str, np.ndarray]:
    """Per part, the pixels entirely covered by it ([size, size] bool), free of edge blending.

    This is where a part's colour is read back (evaluation). A part smaller than a pixel at this size
    (the beak of a small bird at 32x32) can have an empty core; callers skip it.
    """
    k = _SUPERSAMPLE
    blocks = _label_map(scene, size * k).reshape(size, k, size, k)
    return {p: np.isin(blocks, PART_LABELS[p]).all(axis=(1, 3)) for p in PARTS}


def render_counterfactual(scene: Scene, caption_attrs: Mapping[str, str | None], size: int) -> np.ndarray:
    """The exact intended manipulation: the source scene with the caption's named attributes applied."""
    image, _ = render(scene.with_attributes(caption_attrs), size)
    return image


def nearest_colour(rgb: np.ndarray) -> str:
    """Name of the palette colour closest (Euclidean RGB) to a mean colour [3]."""
    names = list(PALETTE)
    table = np.asarray([PALETTE[c] for c in names], np.float64)
    return names[int(np.argmin(((table - np.asarray(rgb, np.float64)) ** 2).sum(axis=1)))]


# Section: captions.


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _phrase(part: str, colour: str, rng: np.random.Generator) -> str:
    """'a red crown' / 'blue wings' (plural part words take no article)."""
    cw = str(rng.choice(COLOR_WORDS[colour]))
    pw = str(rng.choice(PART_WORDS[part]))
    text = f"{cw} {pw}"
    return text if pw.endswith("s") else f"{_article(cw)} {text}"


def _join(phrases: Sequence[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _caption(named: Sequence[str], attrs: Mapping[str, str], rng: np.random.Generator) -> str:
    """One sentence naming exactly the parts in `named` (already in caption order)."""
    phrases = [_phrase(p, attrs[p], rng) for p in named]
    body_first = named[0] == "body" and len(named) > 1
    kind = int(rng.integers(0, 7))
    if body_first and kind in (5, 6):
        # Body colour as an adjective of the bird: "a yellow bird with ..."
        cw = str(rng.choice(COLOR_WORDS[attrs["body"]]))
        rest = _join(phrases[1:])
        if kind == 5:
            return f"this small bird is mostly {cw} with {rest}."
        return f"{_article(cw)} {cw} bird with {rest}."
    if kind == 0:
        return f"this bird has {_join(phrases)}."
    if kind == 1:
        return f"a bird with {_join(phrases)}."
    if kind == 2:
        return f"{_join(phrases)}."
    if kind == 3:
        return f"the bird shows {_join(phrases)}."
    # "its head is red and its wings are blue"
    clauses = []
    for p in named:
        pw = str(rng.choice(PART_WORDS[p]))
        verb = "are" if pw.endswith("s") else "is"
        clauses.append(f"its {pw} {verb} {rng.choice(COLOR_WORDS[attrs[p]])}")
    return f"{'a small bird' if kind == 4 else 'this bird'}: {_join(clauses)}."


def make_captions(
    attrs: Mapping[str, str], n: int, rng: np.random.Generator, min_named: int = 2, max_named: int = 4
) -> list[tuple[str, dict[str, str]]]:
    """n captions for a bird with `attrs`; each with the attributes it names ({part: colour})."""
    out = []
    for _ in range(n):
        k = int(rng.integers(min_named, max_named + 1))
        named = [str(p) for p in rng.permutation(PARTS)[:k]]
        out.append((_caption(named, attrs, rng), {p: attrs[p] for p in named}))
    return out


# Section: the dataset.


@dataclasses.dataclass(frozen=True)
class SynthRecord:
    """One image of synth-birds before rendering (what the download stage writes)."""

    image_id: str
    class_id: int
    class_name: str
    split: str
    scene: Scene
    captions: tuple[str, ...]
    caption_attrs: tuple[dict[str, str], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "class_id": self.class_id,
            "class_name": self.class_name,
            "split": self.split,
            "scene": self.scene.to_record(),
            "captions": list(self.captions),
            "caption_attrs": [dict(a) for a in self.caption_attrs],
        }

    @classmethod
    def from_json(cls, rec: Mapping[str, Any]) -> SynthRecord:
        return cls(
            image_id=rec["image_id"],
            class_id=int(rec["class_id"]),
            class_name=rec["class_name"],
            split=rec["split"],
            scene=Scene.from_record(rec["scene"]),
            captions=tuple(rec["captions"]),
            caption_attrs=tuple(dict(a) for a in rec["caption_attrs"]),
        )


def _sample_classes(cfg: SynthConfig, rng: np.random.Generator) -> list[dict[str, str]]:
    """Distinct attribute combinations; body, wing and head differ so every part is visible."""
    need = cfg.n_classes
    seen: set[tuple[str, ...]] = set()
    classes: list[dict[str, str]] = []
    for _ in range(200 * need):
        body, wing, head, beak = (str(c) for c in rng.choice(COLOR_NAMES, size=4))
        if len({body, wing, head}) < 3 or beak == head or (body, wing, head, beak) in seen:
            continue
        seen.add((body, wing, head, beak))
        classes.append({"body": body, "wing": wing, "head": head, "beak": beak})
        if len(classes) == need:
            return classes
    raise DataError(f"synth.n_classes = {need} distinct colour combinations could not be drawn; use fewer.")


def _covers_palette(classes: Sequence[Mapping[str, str]]) -> bool:
    return all({c[p] for c in classes} >= set(COLOR_NAMES) for p in ("body", "wing", "head"))


def _sample_scene(attrs: Mapping[str, str], rng: np.random.Generator) -> Scene:
    def muted() -> tuple[int, int, int]:
        base = rng.uniform(150, 235)
        return tuple(int(np.clip(base + d, 0, 255)) for d in rng.uniform(-25, 25, 3))  # type: ignore[return-value]

    scale = float(rng.uniform(0.17, 0.25))
    return Scene(
        sky_top=muted(),
        sky_bottom=muted(),
        branch_rgb=tuple(int(v) for v in rng.uniform([70, 60, 40], [110, 95, 70])),  # type: ignore[arg-type]
        branch_angle=float(rng.uniform(-12, 12)),
        branch_width=float(rng.uniform(0.03, 0.06)),
        x=float(rng.uniform(1.7 * scale, 1 - 1.7 * scale)),
        y=float(rng.uniform(1.1 * scale, 1 - 1.35 * scale)),
        scale=scale,
        tilt=float(rng.uniform(-20, 20)),
        facing=int(rng.choice([-1, 1])),
        **attrs,
    )


def generate(cfg: SynthConfig, seed: int) -> list[SynthRecord]:
    """All records of synth-birds for a seed: same config and seed -> identical records."""
    rng = np.random.default_rng(seed)
    # Redraw until every colour appears on every visible part among the training classes (when it can:
    # with very few classes it cannot, and the model then never sees some colours).
    classes = _sample_classes(cfg, rng)
    for _ in range(100):
        if _covers_palette(classes[: cfg.n_classes - cfg.test_classes]):
            break
        classes = _sample_classes(cfg, rng)
    n_train_classes = cfg.n_classes - cfg.test_classes
    records = []
    for i in range(cfg.n_images):
        cid = i % cfg.n_classes  # balanced classes
        attrs = classes[cid]
        caps = make_captions(attrs, cfg.captions_per_image, rng, cfg.min_named, cfg.max_named)
        records.append(
            SynthRecord(
                image_id=f"synth-{i:06d}",
                class_id=cid,
                class_name=" ".join(f"{attrs[p]}-{p}" for p in PARTS),
                split="train" if cid < n_train_classes else "test",
                scene=_sample_scene(attrs, rng),
                captions=tuple(c for c, _ in caps),
                caption_attrs=tuple(a for _, a in caps),
            )
        )
    return records
