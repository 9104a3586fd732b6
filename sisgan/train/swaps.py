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
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

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
_CELL = 8  # colour cell width (32 levels per channel)
_SAME_CLASS = 25.0  # RGB distance under which two words' colours are one class
_OBJECT = 30.0  # RGB distance from both row ends above which a pixel is on the object


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


def ground_colours(
    images: np.ndarray,
    captions: Sequence[Sequence[str]],
    words: Sequence[str] = COLOUR_WORDS,
    min_captions: int = MIN_CAPTIONS,
) -> list[ColourClass]:
    """The pixel colour of each colour word the captions use, grouped into classes of equal colour.

    images [N, S, S, 3] uint8, captions[n] the captions of image n. A word's colour is the mean object pixel,
    among images whose captions use the word, of the colour cell whose presence the word raises most.
    """
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


def _blend_share(
    image: np.ndarray, colour: np.ndarray, pure: np.ndarray, max_residual: float = 24.0
) -> np.ndarray:
    """[S, S] share of `colour` in pixels next to a pure pixel of it: a pixel is read as a·colour + (1-a)·o,
    o being its 3×3 neighbour least like `colour` (the part on the other side of the edge)."""
    h, w, _ = image.shape
    pad = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
    around = np.stack([pad[y : y + h, x : x + w] for y in range(3) for x in range(3)])  # [9, S, S, 3]
    pure_pad = np.pad(pure, 1)
    near = np.stack([pure_pad[y : y + h, x : x + w] for y in range(3) for x in range(3)]).any(axis=0)
    far = np.linalg.norm(around - colour, axis=3).argmax(axis=0)  # [S, S]
    other = np.take_along_axis(around, far[None, ..., None].repeat(3, axis=3), axis=0)[0]
    axis = colour - other
    share = np.clip(((image - other) * axis).sum(axis=2) / ((axis * axis).sum(axis=2) + 1e-6), 0.0, 1.0)
    residual = np.linalg.norm(image - (share[..., None] * colour + (1 - share[..., None]) * other), axis=2)
    return share * (near & (residual < max_residual))


def recolour(
    image: np.ndarray,
    on_object: np.ndarray,
    changes: Sequence[tuple[np.ndarray, np.ndarray]],
    tolerance: float = 32.0,
) -> np.ndarray:
    """image [S, S, 3] uint8 with each (old, new) RGB colour change applied to the object's pixels."""
    f = image.astype(np.float64)
    out = f.copy()
    for old, new in changes:
        pure = np.linalg.norm(f - old, axis=2) < tolerance
        share = np.maximum(pure, _blend_share(f, old, pure)) * on_object
        out += share[..., None] * (new - old)
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


def make_swaps(
    images: np.ndarray,
    captions: Sequence[Sequence[str]],
    classes: Sequence[ColourClass],
    variants: int,
    seed: int,
) -> SwapSet:
    """`variants` swapped captions and recoloured images per training image.

    Each variant takes one of the image's captions that names a colour and gives every colour class it
    names another class's colour (a random word of that class), in the caption and in the pixels alike.
    An image with no such caption keeps its caption and pixels (its pair is then an identity).
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
    on_object = object_mask(images)
    named = [[c for c in caps if set(tokenize(c)) & word_class.keys()] for caps in captions]
    out = np.repeat(images[None], variants, axis=0)
    texts: list[list[str]] = []
    for k in range(variants):
        row: list[str] = []
        for n, caps in enumerate(named):
            if not caps:
                row.append(captions[n][0] if captions[n] else "")
                continue
            caption = caps[int(rng.integers(len(caps)))]
            present = sorted({word_class[w] for w in tokenize(caption) if w in word_class})
            to = {c: int(rng.choice([j for j in range(len(classes)) if j != c])) for c in present}
            replace = {
                w: str(rng.choice(classes[to[word_class[w]]].words))
                for w in sorted(set(tokenize(caption)) & word_class.keys())
            }
            row.append(swap_words(caption, replace))
            out[k, n] = recolour(images[n], on_object[n], [(rgb[c], rgb[j]) for c, j in to.items()])
        texts.append(row)
    return SwapSet(out, texts)


def build_swaps(
    images: np.ndarray,
    captions: Sequence[Sequence[str]],
    text_model: TextModel,
    variants: int,
    seed: int,
    log: Callable[[str], None] = print,
) -> tuple[SwapSet, np.ndarray, list[ColourClass]]:
    """The `gan.swap_weight` training data: (the swap set, its captions' φ(t) [K, N, T] float32 from the
    frozen text encoder, the grounded colour classes)."""
    t0 = time.perf_counter()
    classes = ground_colours(images, captions)
    swaps = make_swaps(images, captions, classes, variants, seed)
    features, _ = text_model.caption_features(swaps.captions)  # set k as "image" k: [K, N, T]
    names = ", ".join("/".join(c.words) for c in classes)
    log(
        f"colour swaps: {len(classes)} colours grounded ({names}); {variants} x {len(images)} edit pairs "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    return swaps, features, classes
