"""Real-data evaluation: the colour measure, text-following ranks, keep, the real and tint rows, the targets,
and the guard that no generator loss reads the VSE image encoder (the evaluation's critic)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT

from sisgan.config import EvalConfig
from sisgan.data.shards import SplitData
from sisgan.errors import ConfigError
from sisgan.eval import colour as col
from sisgan.eval import image_metrics as im
from sisgan.eval.evaluate import (
    ROWS,
    build_context,
    caption_pool,
    colour_following,
    draw_distractors,
    evaluate_rows,
    keep,
    real_targets,
    reference_rows,
    text_following,
)
from sisgan.train.swaps import COLOUR_WORDS, to_lab

S = 32

# Section: the colour measure.


def swatch(rgb: tuple[int, int, int], n: int = 1, size: int = 4) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, np.uint8), (n, size, size, 3)).copy()


def test_every_colour_word_names_a_basic_colour():
    assert set(col.WORD_COLOUR) == set(COLOUR_WORDS)
    assert set(col.WORD_COLOUR.values()) == set(col.COLOURS)


def test_named_colours_in_order_with_synonyms_once():
    red, yellow, white = (col.COLOURS.index(c) for c in ("red", "yellow", "white"))
    assert col.named_colours("A Crimson flower with yellow stamen and red, scarlet edges") == [red, yellow]
    assert col.named_colours("petals of cream; a golden centre") == [white, yellow]
    assert col.named_colours("this flower has large petals") == []
    assert col.named_colours("reddish petals") == []  # whole words only


@pytest.mark.parametrize("shade", [1.0, 0.8])
def test_prototypes_and_their_shades_read_as_themselves(shade):
    protos = np.array(list(col.PROTOTYPES.values()), np.float64)
    image = np.rint(protos * shade).astype(np.uint8)[None, None]  # [1, 1, K, 3]
    assert [col.COLOURS[i] for i in col.pixel_colours(image)[0, 0]] == list(col.COLOURS)


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((170, 150, 200), "purple"),  # a pale lavender petal: low chroma, purple hue
        ((120, 20, 30), "red"),  # a red petal in shadow
        ((250, 250, 240), "white"),
        ((100, 100, 104), "grey"),
        ((8, 12, 30), "black"),  # a deep shadow
        ((130, 85, 40), "brown"),
    ],
)
def test_photo_colours(rgb, name):
    assert col.COLOURS[col.pixel_colours(swatch(rgb))[0, 0, 0]] == name


def test_shares_are_weighted_and_sum_to_one():
    image = np.zeros((1, 4, 4, 3), np.uint8)
    image[0, :, :2] = col.PROTOTYPES["red"]
    image[0, :, 2:] = col.PROTOTYPES["blue"]
    weights = np.ones((1, 4, 4))
    weights[0, :, 2:] = 3.0  # the blue half counts three times
    shares = col.colour_shares(col.pixel_colours(image), weights)[0]
    assert shares[col.COLOURS.index("red")] == pytest.approx(0.25)
    assert shares[col.COLOURS.index("blue")] == pytest.approx(0.75) and shares.sum() == pytest.approx(1.0)
    assert (col.colour_shares(col.pixel_colours(image), np.zeros((1, 4, 4))) == 0).all()


def test_tint_keeps_lightness_and_moves_chroma_toward_the_colour():
    rng = np.random.default_rng(0)
    images = rng.integers(30, 220, (2, 8, 8, 3), dtype=np.uint8)
    blue = col.COLOURS.index("blue")
    out = col.tint(images, [blue, None], 0.5)
    assert (out[1] == images[1]).all()  # no colour named: unchanged
    before, after = to_lab(images[0]), to_lab(out[0])
    assert np.abs(after[..., 0] - before[..., 0]).max() < 1.5  # lightness kept (up to rounding and gamut)
    target = to_lab(np.array(col.PROTOTYPES["blue"], np.float32))[1:]
    d_before = np.linalg.norm(before[..., 1:] - target, axis=-1)
    d_after = np.linalg.norm(after[..., 1:] - target, axis=-1)
    assert (d_after < d_before).mean() > 0.95
    assert im.ssim(im.grey(out[:1]), im.grey(images[:1]))[0] > 0.98  # grey SSIM barely moves


# Section: a tiny photo-like test split (no scenes: the real-data path).


def flower(rgb: tuple[int, int, int], backdrop: tuple[int, int, int] = (40, 90, 40)) -> np.ndarray:
    """A disc of colour rgb on a plain backdrop, S x S."""
    yy, xx = np.mgrid[0:S, 0:S]
    disc = np.hypot(yy - S / 2 + 0.5, xx - S / 2 + 0.5) < S * 0.3
    image = np.empty((S, S, 3), np.uint8)
    image[:] = backdrop
    image[disc] = rgb
    return image


COLOURS_OF_SPLIT = ["red", "yellow", "blue", "white", "purple", "orange"]


@pytest.fixture(scope="module")
def photo_split():
    images = np.stack([flower(col.PROTOTYPES[c]) for c in COLOURS_OF_SPLIT])
    captions = [[f"a flower with {c} petals", f"this {c} flower has round petals"] for c in COLOURS_OF_SPLIT]
    n = len(images)
    return SplitData(
        image_ids=[f"im{i}" for i in range(n)],
        images=images,
        captions=captions,
        class_ids=np.arange(n),
        class_names=COLOURS_OF_SPLIT,
    )


class StubTextModel:
    """VSE stand-in: a caption's φ is the one-hot of the colour it names, an image's φ the one-hot of its
    object's dominant colour (the centre pixel's), so the ranks are known exactly."""

    @dataclasses.dataclass(frozen=True)
    class Config:
        image_size: int = S

    config = Config()

    def encode_texts(self, texts):
        out = torch.zeros(len(texts), len(col.COLOURS))
        for i, t in enumerate(texts):
            out[i, col.named_colours(t)[0]] = 1.0
        return out

    def encode_images(self, x):
        centre = ((x[:, :, S // 2, S // 2] + 1) * 127.5).round().byte().numpy()[:, None, None, :]
        found = col.pixel_colours(centre)[:, 0, 0]
        return torch.nn.functional.one_hot(torch.from_numpy(found), len(col.COLOURS)).float()


@pytest.fixture
def ctx(photo_split):
    cpu = torch.device("cpu")
    return build_context(photo_split, StubTextModel(), EvalConfig(pairs_per_image=2), S, 0, cpu)


def recoloured(ctx, captions: list[str]) -> np.ndarray:
    """Each source's disc repainted in the first colour its caption names (the backdrop kept)."""
    out = ctx.sources.copy()
    for k, caption in enumerate(captions):
        disc = (ctx.sources[k] != ctx.sources[k, 0, 0]).any(axis=-1)
        out[k][disc] = col.PROTOTYPES[col.COLOURS[col.named_colours(caption)[0]]]
    return out


def test_distractors_avoid_source_and_target_images(ctx, photo_split):
    _, owner = caption_pool(photo_split)
    assert ctx.distractors.shape == (len(ctx.captions), 8)  # 6 images x 2 captions, minus 2 images' 4
    for k, row in enumerate(ctx.distractors):
        assert len(set(row.tolist())) == len(row)
        assert ctx.source_index[k] not in owner[row]
        assert photo_split.captions[owner[row][0]]  # indices are real captions
    rng = np.random.default_rng(0)
    many = draw_distractors(np.repeat(np.arange(300), 2), np.array([0, 5]), np.array([1, 6]), 99, rng)
    assert many.shape == (2, 99)
    assert draw_distractors(np.array([0, 1]), np.array([0]), np.array([1]), 99, rng).shape == (1, 0)
    two = dataclasses.replace(ctx, distractors=np.zeros((len(ctx.captions), 0), np.int64))
    with pytest.raises(ConfigError, match="third test image"):
        text_following(two, ctx.sources)


def test_text_following_ranks(ctx):
    perfect = text_following(ctx, recoloured(ctx, ctx.captions))
    assert perfect["r_precision"] == 1.0 and perfect["mean_rank"] == 1.0
    assert perfect["candidates"] == 9 and perfect["chance_mean_rank"] == 5.0
    # A source is unlike its target caption and every distractor alike: ties count against the caption.
    identity = text_following(ctx, ctx.sources)
    assert identity["r_precision"] == 0.0 and identity["mean_rank"] == 9.0
    real = text_following(ctx.row_view("real"), ctx.sources)  # the source with its own caption
    assert real["r_precision"] == 1.0


def test_colour_following_rows(ctx):
    edit = colour_following(ctx, recoloured(ctx, ctx.captions))
    assert edit["colour_rise"] == 1.0 and edit["colour_dominant"] == 1.0 and edit["colour_agreement"] == 1.0
    assert edit["named_colours"] == edit["edit_pairs"] == len(ctx.captions)  # no source had its target's
    identity = colour_following(ctx, ctx.sources)
    assert identity["colour_rise"] == identity["colour_dominant"] == identity["colour_gain"] == 0.0
    real = colour_following(ctx.row_view("real"), ctx.sources)
    assert real == {"colour_pairs": len(ctx.captions), "colour_agreement": 1.0}  # no rise without an edit
    # Painting the backdrop instead of the flower is not following the caption.
    backdrop = ctx.sources.copy()
    for k, caption in enumerate(ctx.captions):
        bg = (ctx.sources[k] == ctx.sources[k, 0, 0]).all(axis=-1)
        backdrop[k][bg] = col.PROTOTYPES[col.COLOURS[col.named_colours(caption)[0]]]
    assert colour_following(ctx, backdrop)["colour_rise"] == 0.0


def test_keep_whole_image_and_background(ctx):
    edit = keep(ctx, recoloured(ctx, ctx.captions))
    assert edit["background_l1"] == 0.0 and edit["l1"] > 0.05 and edit["ssim"] < 1.0
    assert edit["background_ssim"] == pytest.approx(1.0)
    assert 0.3 < edit["background_share"] < 1.0
    same = keep(ctx, ctx.sources)
    assert same["ssim"] == same["ssim_grey"] == 1.0 and same["l1"] == 0.0


def test_rows_of_a_photo_split_and_the_tint_is_caught(photo_split):
    cfg = EvalConfig(pairs_per_image=2, tint_strength=1.0)
    ctx = build_context(photo_split, StubTextModel(), cfg, S, 0, torch.device("cpu"))
    names = ("manipulative_precision", "text_following", "colour_following", "keep", "counterfactual")
    results = evaluate_rows(ctx, recoloured(ctx, ctx.captions), names)
    # No counterfactual without ground truth; `described` is each pair's target photo.
    assert list(results) == ["model", "identity", "real", "tint", "described"]
    for row, groups in results.items():
        assert set(groups) == {n for n in names if row in ROWS[n]}
    assert "keep" not in results["real"]
    # A tint turns the flower toward the caption's colour: colour and text measures rise, grey SSIM stays ...
    tint, identity = results["tint"], results["identity"]
    assert tint["colour_following"]["colour_gain"] > 0.2, tint
    assert tint["text_following"]["mean_rank"] < identity["text_following"]["mean_rank"]
    assert tint["keep"]["ssim_grey"] > 0.95
    # ... but it tints the backdrop as well, and the background L1 says so; the true edit keeps it.
    report = {**results}
    assert real_targets(report, "tint")["background_l1"][2] is False
    assert real_targets(report, "model")["background_l1"] == (0.0, 0.03, True)


def test_described_row_is_the_target_photo(ctx, photo_split):
    described = reference_rows(ctx)["described"]
    assert (described == ctx.crop(photo_split.images[ctx.target_index])).all()
    assert (ctx.target_index != ctx.source_index).all()
    # Each target caption names its own photo's colour, and the discs sit where the sources' do: the described
    # photo follows the text and the colour perfectly, and keeps nothing of the source's object.
    assert text_following(ctx, described)["r_precision"] == 1.0
    assert colour_following(ctx, described)["colour_rise"] == 1.0
    assert keep(ctx, described)["ssim"] < keep(ctx, recoloured(ctx, ctx.captions))["ssim"] + 1e-9


def test_colour_rise_first_reads_the_first_named_colour_only(ctx):
    captions = [
        f"{c} petals and a green centre" for c in (col.COLOURS[col.named_colours(t)[0]] for t in ctx.captions)
    ]
    two = dataclasses.replace(ctx, captions=captions, _cache={})
    result = colour_following(two, recoloured(two, captions))  # only the first colour is painted
    assert result["colour_rise_first"] == 1.0
    assert result["colour_rise"] == pytest.approx(0.5)  # green, the second colour, did not rise


# Section: targets.


def report_with(model: dict, identity_rank: float = 50.0, real_rank: float = 10.0) -> dict:
    return {
        "identity": {"text_following": {"mean_rank": identity_rank}},
        "real": {"text_following": {"mean_rank": real_rank}},
        "model": model,
    }


def test_real_targets_values_and_misses():
    good = {
        "text_following": {"mean_rank": 29.0},
        "colour_following": {"colour_rise": 0.8},
        "keep": {"background_l1": 0.02, "ssim": 0.7},
    }
    assert real_targets(report_with(good)) == {
        "mean_rank": (29.0, 30.0, True),
        "colour_rise": (0.8, 0.75, True),
        "background_l1": (0.02, 0.03, True),
        "ssim": (0.7, 0.6, True),
    }
    bad = {
        "text_following": {"mean_rank": 31.0},
        "colour_following": {"colour_rise": 0.5},
        "keep": {"background_l1": 0.05, "ssim": 0.5},
    }
    assert [met for _, _, met in real_targets(report_with(bad)).values()] == [False] * 4
    with pytest.raises(ConfigError, match="model.keep.background_l1"):
        real_targets(report_with({**good, "keep": {"ssim": 0.7}}))


# Section: the evaluation's encoder is not a critic of the generator.

VSE_IMAGE_SIDE = {"image_encoder", "encode_images", "ConvImageEncoder", "VGGImageEncoder", "build_image_side"}


def names_used(path: Path) -> set[str]:
    """Every identifier a module mentions: names, attributes, imported names and keyword arguments."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.alias):
            found.add(node.name.rsplit(".", 1)[-1])
        elif isinstance(node, ast.keyword) and node.arg:
            found.add(node.arg)
    return found


def generator_side_modules() -> list[Path]:
    """What forms G's losses and training: sisgan/losses.py, sisgan/models/, sisgan/train/ (except vse.py,
    which trains the VSE itself, before and apart from the GAN)."""
    files = [ROOT / "sisgan" / "losses.py", *sorted((ROOT / "sisgan" / "models").glob("*.py"))]
    return files + [p for p in sorted((ROOT / "sisgan" / "train").glob("*.py")) if p.name != "vse.py"]


def test_no_generator_loss_reads_the_vse_image_encoder():
    """text_following and MP judge edits with the VSE image encoder; that is only fair while G never trains
    against it (docs/evaluation.md, "The encoder"). This fails if a loss or the GAN loop ever uses it."""
    modules = generator_side_modules()
    assert len(modules) > 8 and all(p.is_file() for p in modules)
    used = {p.relative_to(ROOT).as_posix(): names_used(p) & VSE_IMAGE_SIDE for p in modules}
    assert {k: v for k, v in used.items() if v} == {}
    # The probe itself finds such a use.
    probe = ROOT / "sisgan" / "train" / "vse.py"
    assert {"image_encoder", "encode_images"} <= names_used(probe)


# Section: on real photos.


def test_the_colour_measure_reads_real_flower_captions():
    """On Oxford-102 test photos the dominant object colour is one the photo's own captions name far more
    often than one another class's captions name: the measure sees what captions call a flower's colour."""
    import scipy.io
    from conftest import real_data

    from sisgan.data.images import center_crop, load_image
    from sisgan.train.swaps import photo_mask

    root = real_data("flowers")
    labels = scipy.io.loadmat(root / "imagelabels.mat")["labels"].ravel()
    stems = [f"image_{n:05d}" for label in range(1, 21) for n in (np.flatnonzero(labels == label) + 1)[:6]]
    classes = [stem_label for label in range(1, 21) for stem_label in [label] * 6]
    images = center_crop(np.stack([load_image(root / "jpg" / f"{s}.jpg", 37, 10**8) for s in stems]), 32)
    captions = [
        (root / f"cvpr2016_flowers/text_c10/class_{c:05d}/{s}.txt").read_text().splitlines()
        for s, c in zip(stems, classes, strict=True)
    ]
    dominant = col.colour_shares(col.pixel_colours(images), photo_mask(images)).argmax(axis=1)

    def agreement(offset: int) -> float:
        hits = [
            dominant[i] in col.named_colours(c)
            for i in range(len(stems))
            for c in captions[(i + offset) % len(stems)]
            if col.named_colours(c)
        ]
        return float(np.mean(hits))

    own, other = agreement(0), agreement(6 * 7)  # the same position in a class 7 classes away
    assert own > 0.45 and own - other > 0.2, (own, other)
