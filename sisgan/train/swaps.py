"""Caption colour swaps: edit pairs with a known answer, built from the training data alone.

A caption that names a colour ("a red crown") can be edited by swapping the colour word ("a blue crown"),
and its image can be edited the same way by recolouring the pixels of that colour. (x, swapped caption) ->
recoloured x is then a training pair for exactly the task SISGAN is asked to do at test time, with a pixel
target, where every critic-driven signal (the matching-aware D, the VSE loss) gives only a score that G
learns to game (benchmarks/RESULTS.md, "Text-following").

Nothing here reads labels. Which pixel colour a colour word means is learnt from the data: which fine colour
cells each image's object shows is fitted, by least squares, on how often its captions use each colour word,
and a word means the cell it raises most. Fitting all words jointly keeps a word from being credited with
the colours of the words it appears with. Words whose colours coincide (red/crimson, grey/gray) form one
class. Birds' and flowers' parts are close to uniform in colour, so recolouring the pixels near a class's
colour recolours the parts of that colour; edge pixels that blend a part with its neighbour are recoloured
by their share of the part.

Photographs break the flat-colour assumptions (benchmarks/RESULTS.md, "Edit pairs on real photos"): a petal
or a breast is shaded, textured and lit, so its pixels spread over many fine cells and far beyond the flat
tolerance, and its backdrop (leaves, water, bark) is rarely a sky that varies only from top to bottom. The
`shaded` mode (`colours="shaded"`, gan.swap_colours) keeps the same steps in CIELAB instead: colours are
cells of hue, chroma and lightness wide enough to hold a shaded surface, an image's cells are weighed by their
share of its pixels, and a recolour moves every pixel by its soft membership of the old colour (the whole way
from half a membership up), rotating its hue and scaling its chroma (additive from a grey colour) while
keeping its lightness variations, i.e. the shading and texture. The `flat` mode (the default) is unchanged:
synth-birds' pairs are bit for bit what they were.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from sisgan.errors import ConfigError
from sisgan.text.tokenizer import tokenize

if TYPE_CHECKING:
    from sisgan.text.model import TextModel

# Common colour words of bird and flower captions (CUB, Oxford-102). Words a dataset's captions do not use
# often enough are ignored.
COLOUR_WORDS: tuple[str, ...] = tuple(
    "red crimson scarlet maroon orange yellow gold golden green olive blue teal turquoise purple violet "
    "lavender magenta pink brown tan buff rufous black white grey gray cream".split()
)
MIN_CAPTIONS = 20  # a colour word is grounded only from at least this many captions
# Part words of bird and flower captions, by the part they name (a bird's or a flower's colour is its body's
# or its petals'). A swap recolours every pixel of a colour, so it is made only where the image's captions say
# which parts have that colour and the swapped caption names them all (`swappable`).
PART_WORDS: dict[str, str] = {
    **dict.fromkeys("body belly breast bird".split(), "body"),
    **dict.fromkeys("wing wings".split(), "wing"),
    **dict.fromkeys("head crown".split(), "head"),
    **dict.fromkeys("beak bill".split(), "beak"),
    **{w: w for w in "throat nape back tail rump eyebrow eyering cheek feet legs".split()},
    **dict.fromkeys("petal petals flower flowers".split(), "petal"),
    **dict.fromkeys("center centre".split(), "center"),
    **dict.fromkeys("stamen stamens".split(), "stamen"),
    **dict.fromkeys("anther anthers".split(), "anther"),
    **dict.fromkeys("pistil pistils stigma".split(), "pistil"),
    **dict.fromkeys("sepal sepals".split(), "sepal"),
    **dict.fromkeys("leaf leaves".split(), "leaf"),
    **dict.fromkeys("stem stems".split(), "stem"),
}
_CELL = 8  # colour cell width (32 levels per channel)
_SAME_CLASS = 25.0  # RGB distance under which two words' colours are one class
_OBJECT = 30.0  # RGB distance from both row ends above which a pixel is on the object

ColourModel = Literal["flat", "shaded"]  # flat parts on a sky (synth-birds) | shaded photographs
# The shaded model's cells: hue in 15-degree steps x 3 lightness x 2 chroma levels for colourful pixels,
# 5 lightness levels for the grey ones (CIELAB chroma below _GREY).
_HUES, _GREY = 24, 12.0
_MERGE_LAB = 15.0  # CIELAB distance under which two words' colours are one class (shaded)
# Soft membership widths of a colour: chroma plane and lightness (grey colours); hue (degrees) and log
# chroma ratio (colourful ones, whose lightness is matched at half weight: shading).
_SIGMA_AB, _SIGMA_L, _SIGMA_HUE, _SIGMA_CHROMA = 14.0, 28.0, 15.0, 0.5
# A pixel at least this much a member of the old colour moves the whole way to the new one; below, in
# proportion. Moving each pixel by its membership alone left much of a petal part-way (a red petal half
# turned to yellow reads orange): on Oxford-102 the targets raised their caption's named colours 32% of the
# time, 40% with this, and a model trained on them 35% -> 38% (benchmarks/RESULTS.md, "What limits the
# colour rise").
_FULL_MEMBER = 0.5


@dataclasses.dataclass(frozen=True)
class ColourClass:
    """Colour words that mean the same pixel colour, and that colour (RGB, 0-255)."""

    words: tuple[str, ...]
    rgb: tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class SwapSet:
    """`variants` edit pairs per training image: images [K, N, S, S, 3] uint8 (the recoloured sources) and
    captions[k][n], the swapped caption that asks for images[k, n] from the unedited image n."""

    images: np.ndarray
    captions: list[list[str]]


def object_mask(images: np.ndarray, threshold: float = _OBJECT) -> np.ndarray:
    """[N, S, S, 3] uint8 -> [N, S, S] bool: pixels unlike both ends of their row.

    Skies and plain backdrops vary mostly from top to bottom, so a row's end pixels show its background.
    """
    f = images.astype(np.float32)
    left = np.linalg.norm(f - f[:, :, :1], axis=3)
    right = np.linalg.norm(f - f[:, :, -1:], axis=3)
    return np.minimum(left, right) > threshold


# Section: CIELAB (D65), for the shaded model.

_M_RGB_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
_WHITE = np.array([0.95047, 1.0, 1.08883])


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB [..., 3] in 0-255 -> CIELAB [..., 3] float32 (L 0-100)."""
    c = np.asarray(rgb, np.float32) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    t = (c @ _M_RGB_XYZ.T.astype(np.float32)) / _WHITE.astype(np.float32)
    f = np.where(t > 216 / 24389, np.cbrt(t), (24389 / 27 * t + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def from_lab(lab: np.ndarray) -> np.ndarray:
    """CIELAB [..., 3] -> sRGB [..., 3] float in 0-255 (out-of-gamut values clipped)."""
    lab = np.asarray(lab, np.float32)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)
    t = np.where(f > 6 / 29, f**3, (116 * f - 16) * 27 / 24389) * _WHITE.astype(np.float32)
    c = t @ np.linalg.inv(_M_RGB_XYZ).T.astype(np.float32)
    c = np.clip(c, 0.0, 1.0)
    c = np.where(c > 0.0031308, 1.055 * c ** (1 / 2.4) - 0.055, 12.92 * c)
    return np.clip(c * 255.0, 0.0, 255.0)


def _lab_cells(lab: np.ndarray) -> np.ndarray:
    """[..., 3] CIELAB -> [...] cell: colourful pixels by hue x lightness x chroma, grey ones by lightness."""
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    hue = ((np.degrees(np.arctan2(lab[..., 2], lab[..., 1])) % 360) * _HUES / 360).astype(np.int64) % _HUES
    light = np.digitize(lab[..., 0], [40.0, 70.0])
    colourful = (hue * 3 + light) * 2 + (chroma > 35.0)
    grey = _HUES * 6 + np.digitize(lab[..., 0], [20.0, 40.0, 60.0, 80.0])
    return np.where(chroma >= _GREY, colourful, grey)


def _word_use(captions: Sequence[Sequence[str]], words: Sequence[str]) -> np.ndarray:
    """[N, W]: how many of image n's captions use word w."""
    used = np.zeros((len(captions), len(words)))
    for i, caps in enumerate(captions):
        for caption in caps:
            used[i] += [w in set(tokenize(caption)) for w in words]
    return used


def _classes_of(colours: dict[str, np.ndarray], same: float) -> list[list[str]]:
    """Words grouped greedily: a word joins the first class whose colour is within `same` of its own."""
    classes: list[list[str]] = []
    for w, c in colours.items():
        for group in classes:
            if np.linalg.norm(colours[group[0]] - c) < same:
                group.append(w)
                break
        else:
            classes.append([w])
    return classes


def _ground_shaded(
    images: np.ndarray, captions: Sequence[Sequence[str]], words: Sequence[str], min_captions: int
) -> list[ColourClass]:
    """ground_colours for photographs: coarse CIELAB cells of the object, weighed by the square root of their
    share of it."""
    n = len(images)
    lab = to_lab(images).reshape(n, -1, 3)
    cells = _lab_cells(lab)  # [N, P]
    on_object = photo_mask(images).reshape(n, -1) > 0.5
    n_cells = _HUES * 6 + 5
    counts = np.stack([np.bincount(c[m], minlength=n_cells) for c, m in zip(cells, on_object, strict=True)])
    # A shaded surface spreads over a few neighbouring cells, so which cells an image shows (the flat model's
    # presence) is noise here; their share counts area, and its square root keeps a large backdrop-coloured
    # area (leaves, water) from outweighing a small named part (benchmarks/RESULTS.md compares the three).
    response = np.sqrt(counts / np.maximum(on_object.sum(axis=1, keepdims=True), 1))  # [N, C]
    used = _word_use(captions, words)
    keep = used.sum(axis=0) >= min_captions
    if not keep.any():
        return []
    vocab = [w for w, k in zip(words, keep, strict=True) if k]
    uses = used[:, keep] / np.maximum([len(c) for c in captions], 1)[:, None]  # [N, W]
    # As in the flat model, a joint least-squares fit credits each word with its own colour, not those of
    # the words it appears with.
    x = np.concatenate([np.ones((n, 1)), uses], axis=1)
    effect = np.linalg.lstsq(x, response, rcond=None)[0][1:]  # [W, C]
    colours: dict[str, np.ndarray] = {}
    for w, e, col in zip(vocab, effect, uses.T, strict=True):
        best = int(e.argmax())
        which = np.flatnonzero(col > 0)
        colours[w] = lab[which][(cells[which] == best) & on_object[which]].astype(np.float64).mean(axis=0)
    classes = _classes_of(colours, _MERGE_LAB)
    return [
        ColourClass(tuple(g), tuple(float(v) for v in from_lab(colours[g[0]].astype(np.float32))))
        for g in classes
    ]


def photo_mask(images: np.ndarray, threshold: float = _OBJECT) -> np.ndarray:
    """[N, S, S, 3] uint8 -> [N, S, S] float in [0, 1], the shaded model's object.

    Pixels unlike both ends of their row or of their column (backdrops vary in every direction, not only from
    top to bottom), weighed by a centred disc that fades from 0.65 to 0.95 of the half-size (these datasets'
    photos are centred on the object; the fade keeps a recolour from ending in a visible circle).
    """
    rows = object_mask(images, threshold)
    cols = object_mask(images.transpose(0, 2, 1, 3), threshold).transpose(0, 2, 1)
    s = images.shape[1]
    yy, xx = np.mgrid[0:s, 0:s]
    r = np.hypot(yy - (s - 1) / 2, xx - (s - 1) / 2) / (s / 2)
    disc = np.clip((0.95 - r) / 0.3, 0.0, 1.0)
    return (rows | cols) * disc


def ground_colours(
    images: np.ndarray,
    captions: Sequence[Sequence[str]],
    words: Sequence[str] = COLOUR_WORDS,
    min_captions: int = MIN_CAPTIONS,
    colours: ColourModel = "flat",
) -> list[ColourClass]:
    """The pixel colour of each colour word the captions use, grouped into classes of equal colour.

    images [N, S, S, 3] uint8, captions[n] the captions of image n. flat: a word's colour is the mean object
    pixel, among images whose captions use the word, of the fine colour cell whose presence the word raises
    most. shaded: the same with coarse CIELAB cells weighed by their share of each image (photographs).
    """
    if colours == "shaded":
        return _ground_shaded(images, captions, words, min_captions)
    n = len(images)
    obj = object_mask(images)
    q = images.astype(np.int64) // _CELL
    levels = 256 // _CELL
    cells = (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]  # [N, S, S]
    # Which colours an image shows (cells with at least 2 object pixels), not how much of each: a part's
    # area (a body against a beak) must not decide which colour a word means. The cells are fine, so a
    # flat part colour keeps to one cell while edge blends and varying backdrops spread over many.
    shown = [np.unique(cells[i][obj[i]], return_counts=True) for i in range(n)]
    shown = [u[c >= 2] for u, c in shown]
    seen, often = np.unique(np.concatenate(shown), return_counts=True)
    columns = seen[often >= max(3, n // 200)]  # colours of at least 0.5% of the images
    present = np.stack([np.isin(columns, u) for u in shown]).astype(np.float64)  # [N, C]
    used = np.zeros((n, len(words)))
    for i, caps in enumerate(captions):
        for caption in caps:
            used[i] += [w in set(tokenize(caption)) for w in words]
    keep = used.sum(axis=0) >= min_captions
    if not keep.any() or not len(columns):
        return []
    vocab = [w for w, k in zip(words, keep, strict=True) if k]
    share = used[:, keep] / np.maximum([len(c) for c in captions], 1)[:, None]  # [N, W]
    # Colours an image shows ~ intercept + Σ over words of (share of its captions using the word) · effect:
    # a joint least-squares fit, so that a word is not credited with the colours of the words it tends to
    # appear with (in a small dataset, "blue" birds may mostly also be brown).
    x = np.concatenate([np.ones((n, 1)), share], axis=1)
    effect = np.linalg.lstsq(x, present, rcond=None)[0][1:]  # [W, C]
    colours: dict[str, np.ndarray] = {}
    for w, e, col in zip(vocab, effect, share.T, strict=True):
        best = columns[int(e.argmax())]
        which = col > 0
        colours[w] = images[which][obj[which] & (cells[which] == best)].astype(np.float64).mean(axis=0)
    classes: list[list[str]] = []
    for w, rgb in colours.items():
        for group in classes:
            if np.linalg.norm(colours[group[0]] - rgb) < _SAME_CLASS:
                group.append(w)
                break
        else:
            classes.append([w])
    return [ColourClass(tuple(g), tuple(float(v) for v in colours[g[0]])) for g in classes]


FLAT_TOLERANCE = 32.0  # RGB distance of a pixel to a flat colour that still counts as that colour
_JOB_BATCH = 1024  # colour changes per batch (~34 MB of float64 images at 37x37)


def _blend_share(
    image: np.ndarray, colour: np.ndarray, pure: np.ndarray, max_residual: float = 24.0
) -> np.ndarray:
    """[..., S, S] share of `colour` in pixels next to a pure pixel of it: a pixel is read as
    a·colour + (1-a)·o, o being its 3×3 neighbour least like `colour` (the part on the other side of the
    edge). image [..., S, S, 3] float, colour [3] or [..., 1, 1, 3], pure [..., S, S] bool.

    Only the pixels next to a pure one are read (their 3×3 neighbourhoods gathered): the rest get 0."""
    h, w = image.shape[-3:-1]
    lead = [(0, 0)] * (image.ndim - 3)
    pure_pad = np.pad(pure, [*lead, (1, 1), (1, 1)])
    near = np.stack([pure_pad[..., y : y + h, x : x + w] for y in range(3) for x in range(3)]).any(axis=0)
    *at, ys, xs = np.nonzero(near)  # the pixels read: [P] each
    pad = np.pad(image, [*lead, (1, 1), (1, 1), (0, 0)], mode="edge")
    around = np.stack([pad[(*at, ys + y, xs + x)] for y in range(3) for x in range(3)])  # [9, P, 3]
    col = np.broadcast_to(colour, (*image.shape[:-3], 1, 1, 3))[(*at, 0 * ys, 0 * xs)]  # [P, 3]
    pixel = image[(*at, ys, xs)]  # [P, 3]
    far = np.linalg.norm(around - col, axis=-1).argmax(axis=0)  # [P]
    other = around[far, np.arange(len(far))]
    axis = col - other
    share = np.clip(((pixel - other) * axis).sum(axis=-1) / ((axis * axis).sum(axis=-1) + 1e-6), 0.0, 1.0)
    residual = np.linalg.norm(pixel - (share[..., None] * col + (1 - share[..., None]) * other), axis=-1)
    out = np.zeros(image.shape[:-1])
    out[(*at, ys, xs)] = share * (residual < max_residual)
    return out


def _flat_shift(
    image: np.ndarray, on_object: np.ndarray, old: np.ndarray, new: np.ndarray, tolerance: float
) -> np.ndarray:
    """What one flat colour change adds to image [..., S, S, 3] float: pixels within `tolerance` of old
    (and edge blends) on the object, shifted by new - old ([3] or [..., 1, 1, 3])."""
    pure = np.linalg.norm(image - old, axis=-1) < tolerance
    share = np.maximum(pure, _blend_share(image, old, pure)) * on_object
    return share[..., None] * (new - old)


def membership(lab: np.ndarray, colour_lab: np.ndarray) -> np.ndarray:
    """[..., 3] CIELAB -> [...] soft membership (0-1) of a colour, as shading varies it.

    A shadow or a highlight scales a surface's lightness and chroma together and keeps its hue, so a colourful
    colour is matched by hue angle (15 degrees), chroma ratio (a factor of about 1.6) and, loosely, lightness;
    a grey one by its distance in the chroma plane and lightness.
    """
    d_l = (lab[..., 0] - colour_lab[0]) / _SIGMA_L
    chroma, c0 = np.hypot(lab[..., 1], lab[..., 2]), float(np.hypot(colour_lab[1], colour_lab[2]))
    if c0 < _GREY:
        d_ab = np.hypot(lab[..., 1] - colour_lab[1], lab[..., 2] - colour_lab[2]) / _SIGMA_AB
        w = np.exp(-0.5 * (d_ab**2 + d_l**2))
    else:
        turn = np.arctan2(lab[..., 2], lab[..., 1]) - np.arctan2(colour_lab[2], colour_lab[1])
        d_hue = np.degrees(np.angle(np.exp(1j * turn))) / _SIGMA_HUE
        d_c = np.log(np.maximum(chroma, 1e-3) / c0) / _SIGMA_CHROMA
        w = np.exp(-0.5 * (d_hue**2 + d_c**2 + (0.5 * d_l) ** 2))
    return np.where(w > 0.05, w, 0.0)


def _shift_lab(lab: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Pixels of colour `old` moved to `new`: lightness by the difference (shading kept); between two
    colourful colours the chroma plane rotates by the hue difference and scales by the chroma ratio (a
    shadow keeps its relative chroma); to a grey one it only scales; from a grey one it moves by the
    difference."""
    out = lab.copy()
    out[..., 0] += new[0] - old[0]
    c_old, c_new = np.hypot(old[1], old[2]), np.hypot(new[1], new[2])
    if c_old < _GREY:
        out[..., 1:] += new[1:] - old[1:]
        return out
    # From a colourful colour: each pixel's deviation from old in the chroma plane turns by the hue
    # difference (none to a grey, which has no hue) and scales by the chroma ratio. To a grey, adding
    # new - old instead left a pale or shaded pixel of a red petal with its chroma deficit as the opposite
    # hue: a petal turned to white came out cyan-grey in its shadows.
    turn = np.arctan2(new[2], new[1]) - np.arctan2(old[2], old[1]) if c_new >= _GREY else 0.0
    cos, sin = np.cos(turn) * c_new / c_old, np.sin(turn) * c_new / c_old
    d_a, d_b = lab[..., 1] - old[1], lab[..., 2] - old[2]
    out[..., 1] = new[1] + cos * d_a - sin * d_b
    out[..., 2] = new[2] + sin * d_a + cos * d_b
    return out


def _recolour_shaded(
    image: np.ndarray, on_object: np.ndarray, changes: Sequence[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    lab = to_lab(image)
    out = lab.copy()
    for old, new in changes:
        old_lab, new_lab = to_lab(np.asarray(old)), to_lab(np.asarray(new))
        w = (np.minimum(membership(lab, old_lab) / _FULL_MEMBER, 1.0) * on_object)[..., None]
        out += w * (_shift_lab(lab, old_lab, new_lab) - lab)
    return np.clip(np.rint(from_lab(out)), 0, 255).astype(np.uint8)


def recolour(
    image: np.ndarray,
    on_object: np.ndarray,
    changes: Sequence[tuple[np.ndarray, np.ndarray]],
    tolerance: float = FLAT_TOLERANCE,
    colours: ColourModel = "flat",
) -> np.ndarray:
    """image [S, S, 3] uint8 with each (old, new) RGB colour change applied to the object's pixels.

    flat: pixels within `tolerance` of old (and edge blends) shift by new - old. shaded: every pixel moves by
    its soft membership of old (the whole way from _FULL_MEMBER up), keeping its shading (`_shift_lab`);
    `tolerance` is not used.
    """
    if colours == "shaded":
        return _recolour_shaded(image, on_object, changes)
    f = image.astype(np.float64)
    out = f.copy()
    for old, new in changes:
        out += _flat_shift(f, on_object, old, new, tolerance)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _recolour_flat_many(
    images: np.ndarray,
    on_object: np.ndarray,
    jobs: Sequence[tuple[int, int, np.ndarray, np.ndarray]],
    variants: int,
) -> np.ndarray:
    """`recolour` (flat) of many (set k, image n, old, new) changes at once: [K, N, S, S, 3] uint8, images
    [N, S, S, 3]. Every change reads the source image, so they are computed in batches; they are summed
    in job order, so each image gets exactly the float sums of `recolour`."""
    f = images.astype(np.float64)
    out = np.repeat(f[None], variants, axis=0)  # [K, N, S, S, 3]
    flat = out.reshape(-1, *f.shape[1:])
    for i in range(0, len(jobs), _JOB_BATCH):
        batch = jobs[i : i + _JOB_BATCH]
        n = np.array([j[1] for j in batch])
        old = np.stack([j[2] for j in batch])[:, None, None]  # [J, 1, 1, 3]
        new = np.stack([j[3] for j in batch])[:, None, None]
        target = np.array([j[0] * len(f) + j[1] for j in batch])
        np.add.at(flat, target, _flat_shift(f[n], on_object[n], old, new, FLAT_TOLERANCE))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def swap_words(caption: str, replace: dict[str, str]) -> str:
    """The caption with whole words replaced (case-insensitive; everything else kept as written) and an
    article right before a replaced word made to fit it ("a red crown" -> "an orange crown")."""
    if not replace:
        return caption
    words = "|".join(map(re.escape, replace))
    pattern = re.compile(rf"\b(?:(a|an)(\s+))?({words})\b", re.IGNORECASE)

    def sub(m: re.Match[str]) -> str:
        new = replace[m.group(3).lower()]
        if m.group(1) is None:
            return new
        article = "an" if new[0] in "aeiou" else "a"
        article = article.capitalize() if m.group(1)[0].isupper() else article
        return article + m.group(2) + new

    return pattern.sub(sub, caption)


def colour_parts(tokens: Sequence[str], word_class: dict[str, int]) -> dict[int, set[str | None]]:
    """{colour class: the parts a caption gives it} from its tokens. A colour word belongs to the part word
    before "is"/"are" ("its crown is red"), after "mostly" to the body, else to the next part word within
    three tokens that no "and" or "with" separates from it ("a red crown"); None when none is found."""
    out: dict[int, set[str | None]] = {}
    for i, word in enumerate(tokens):
        if word not in word_class:
            continue
        part = None
        if i >= 2 and tokens[i - 1] in ("is", "are"):
            before = reversed(tokens[max(0, i - 4) : i - 1])
            part = next((PART_WORDS[w] for w in before if w in PART_WORDS), None)
        elif i >= 1 and tokens[i - 1] == "mostly":
            part = "body"
        if part is None:
            for w in tokens[i + 1 : i + 4]:
                if w in ("and", "with"):
                    break
                if w in PART_WORDS:
                    part = PART_WORDS[w]
                    break
        out.setdefault(word_class[word], set()).add(part)
    return out


def swappable(captions: Sequence[str], word_class: dict[str, int]) -> list[list[int]]:
    """Per caption, the colour classes it names that a swap may recolour: those whose parts, in every
    caption of the image, are parts this caption gives the colour. "a red crown" of a bird whose other
    captions say "a red belly" is not swapped: recolouring the red pixels would recolour a belly the swapped
    caption does not name (unnamed parts that shared a named colour cost the pairs 10% of their keep)."""
    parsed = [colour_parts(tokenize(c), word_class) for c in captions]
    known: dict[int, set[str | None]] = {}
    for parts in parsed:
        for k, ps in parts.items():
            known.setdefault(k, set()).update(ps - {None})
    return [sorted(k for k, ps in parts.items() if known[k] <= ps) for parts in parsed]


def make_swaps(
    images: np.ndarray,
    captions: Sequence[Sequence[str]],
    classes: Sequence[ColourClass],
    variants: int,
    seed: int,
    colours: ColourModel = "flat",
) -> SwapSet:
    """`variants` swapped captions and recoloured images per training image (recoloured by `colours`).

    Each variant takes one of the image's captions that names a `swappable` colour and gives every such
    colour class another class's colour (a random word of that class), in the caption and in the pixels
    alike. An image with no such caption keeps its caption and pixels (its pair is then an identity).
    """
    if len(classes) < 2:
        raise ConfigError(
            "gan.swap_weight > 0 needs captions that name at least two colours (the words in "
            "sisgan.train.swaps.COLOUR_WORDS, each in at least "
            f"{MIN_CAPTIONS} captions); found {len(classes)}. Set gan.swap_weight: 0 for this dataset."
        )
    rng = np.random.default_rng(seed)
    word_class = {w: k for k, c in enumerate(classes) for w in c.words}
    rgb = [np.asarray(c.rgb) for c in classes]
    on_object = photo_mask(images) if colours == "shaded" else object_mask(images)
    named = [
        [(c, ks) for c, ks in zip(caps, swappable(caps, word_class), strict=True) if ks] for caps in captions
    ]
    out = np.repeat(images[None], variants, axis=0)
    jobs: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # flat: (k, n, old, new), recoloured at once
    texts: list[list[str]] = []
    for k in range(variants):
        row: list[str] = []
        for n, caps in enumerate(named):
            if not caps:
                row.append(captions[n][0] if captions[n] else "")
                continue
            caption, present = caps[int(rng.integers(len(caps)))]
            to = {c: int(rng.choice([j for j in range(len(classes)) if j != c])) for c in present}
            replace = {
                w: str(rng.choice(classes[to[word_class[w]]].words))
                for w in sorted(set(tokenize(caption)) & word_class.keys())
                if word_class[w] in to
            }
            row.append(swap_words(caption, replace))
            changes = [(rgb[c], rgb[j]) for c, j in to.items()]
            if colours == "flat":
                jobs += [(k, n, old, new) for old, new in changes]
            else:
                out[k, n] = recolour(images[n], on_object[n], changes, colours=colours)
        texts.append(row)
    if colours == "flat":
        out = _recolour_flat_many(images, on_object, jobs, variants)
    return SwapSet(out, texts)


def build_swaps(
    images: np.ndarray,
    captions: Sequence[Sequence[str]],
    text_model: TextModel,
    variants: int,
    seed: int,
    log: Callable[[str], None] = print,
    colours: ColourModel = "flat",
) -> tuple[SwapSet, np.ndarray, list[ColourClass]]:
    """The `gan.swap_weight` training data: (the swap set, its captions' φ(t) [K, N, T] float32 from the
    frozen text encoder, the grounded colour classes). colours: gan.swap_colours."""
    t0 = time.perf_counter()
    classes = ground_colours(images, captions, colours=colours)
    swaps = make_swaps(images, captions, classes, variants, seed, colours=colours)
    features, _ = text_model.caption_features(swaps.captions)  # set k as "image" k: [K, N, T]
    names = ", ".join("/".join(c.words) for c in classes)
    log(
        f"colour swaps ({colours}): {len(classes)} colours grounded ({names}); "
        f"{variants} x {len(images)} edit pairs in {time.perf_counter() - t0:.0f} s"
    )
    return swaps, features, classes
