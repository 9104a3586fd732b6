"""Colour-swap edit pairs (sisgan.train.swaps): grounding colour words, swapping them, recolouring alike."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synth_shards

from sisgan.config import SynthConfig, TextConfig
from sisgan.data import synth
from sisgan.data.shards import load_split
from sisgan.errors import ConfigError
from sisgan.text.model import TextModel
from sisgan.text.tokenizer import Vocabulary, tokenize
from sisgan.train.swaps import (
    ColourClass,
    build_swaps,
    colour_parts,
    ground_colours,
    make_swaps,
    recolour,
    swap_words,
    swappable,
)

WORD_COLOUR = {w: c for c, words in synth.COLOR_WORDS.items() for w in words}


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    cfg = SynthConfig(n_images=400, n_classes=50, test_classes=10, captions_per_image=5)
    return load_split(synth_shards(tmp_path_factory.mktemp("shards"), cfg, load_size=24), "train")


def test_colour_words_are_grounded_to_their_pixel_colours_without_labels(split):
    classes = ground_colours(split.images, split.captions)
    assert len(classes) == len(synth.PALETTE)
    for c in classes:
        colours = {WORD_COLOUR[w] for w in c.words}
        assert len(colours) == 1, f"words of different colours grouped: {c.words}"
        assert np.abs(np.asarray(c.rgb) - synth.PALETTE[colours.pop()]).max() < 4
    # Synonyms share a class.
    by_word = {w: c for c in classes for w in c.words}
    assert by_word["red"] is by_word["crimson"] and by_word["grey"] is by_word["gray"]


def test_swap_words_keeps_the_caption_and_fixes_articles():
    replace = {"red": "orange", "orange": "blue"}
    swapped = swap_words("A red bird with an orange beak, redstart-like.", replace)
    assert swapped == "An orange bird with a blue beak, redstart-like."
    assert swap_words("its wings are Red", {"red": "white"}) == "its wings are white"
    assert swap_words("no colour here", {}) == "no colour here"


def test_recolour_changes_the_keyed_colour_edges_by_their_share_and_nothing_else():
    old, new, sky = np.array([200.0, 40, 40]), np.array([40.0, 40, 200]), np.array([150.0, 200, 230])
    image = np.tile(sky, (8, 8, 1))
    image[2:6, 2:5] = old
    image[2:6, 5] = 0.5 * old + 0.5 * sky  # an edge pixel half covered by the part
    on_object = np.ones((8, 8), bool)
    out = recolour(np.rint(image).astype(np.uint8), on_object, [(old, new)]).astype(float)
    np.testing.assert_allclose(out[2:6, 2:5], np.broadcast_to(new, (4, 3, 3)), atol=1)
    np.testing.assert_allclose(out[2:6, 5], np.broadcast_to(0.5 * new + 0.5 * sky, (4, 3)), atol=2)
    untouched = np.ones((8, 8), bool)
    untouched[2:6, 2:6] = False
    np.testing.assert_array_equal(out[untouched], np.rint(image)[untouched])
    # Pixels off the object are never recoloured.
    off = recolour(np.rint(image).astype(np.uint8), np.zeros((8, 8), bool), [(old, new)])
    np.testing.assert_array_equal(off, np.rint(image).astype(np.uint8))


def _exact_edit(split, n: int, swapped: str) -> np.ndarray | None:
    """The counterfactual of image n under the swapped caption, or None if no caption of n aligns with it."""
    toks = tokenize(swapped)
    for c, caption in enumerate(split.captions[n]):
        pairs = list(zip(tokenize(caption), toks, strict=False))
        if len(pairs) != len(toks) or len(tokenize(caption)) != len(toks):
            continue
        if all(a == b or {a, b} <= WORD_COLOUR.keys() or {a, b} == {"a", "an"} for a, b in pairs):
            mapping = {WORD_COLOUR[a]: WORD_COLOUR[b] for a, b in pairs if a in WORD_COLOUR}
            attrs = {p: (mapping.get(v, v) if v else None) for p, v in split.caption_attrs[n][c].items()}
            scene = synth.Scene.from_record(split.scenes[n])
            return synth.render_counterfactual(scene, attrs, split.images.shape[1])
    return None


def test_swapped_pairs_match_the_exact_edits(split):
    classes = ground_colours(split.images, split.captions)
    swaps = make_swaps(split.images, split.captions, classes, variants=2, seed=0)
    n = len(split)
    assert swaps.images.shape == (2, *split.images.shape) and len(swaps.captions) == 2
    errors, changed = [], 0
    for k in range(2):
        for i in range(n):
            exact = _exact_edit(split, i, swaps.captions[k][i])
            assert exact is not None, f"caption {swaps.captions[k][i]!r} is not a swap of one of image {i}'s"
            changed += swaps.captions[k][i] not in split.captions[i]
            errors.append(np.abs(exact.astype(float) - swaps.images[k, i]).mean() / 255)
    assert changed > 0.9 * 2 * n, "every named colour is swapped to another"
    # Close to the exact edit (an unnamed part that shares a named part's colour is recoloured too).
    assert np.mean(errors) < 0.015
    diff = np.abs(split.images.astype(float) - swaps.images[0]).mean() / 255
    assert diff > 2 * np.mean(errors), "the pairs are edits, not copies"
    # Seeded.
    again = make_swaps(split.images, split.captions, classes, variants=2, seed=0)
    np.testing.assert_array_equal(again.images, swaps.images)
    assert again.captions == swaps.captions
    assert make_swaps(split.images, split.captions, classes, variants=2, seed=1).captions != swaps.captions


WORD_CLASS = {w: k for k, w in enumerate(("red", "blue", "yellow", "black"))} | {"crimson": 0}


@pytest.mark.parametrize(
    ("caption", "parts"),
    [
        ("a red crown and blue wings.", {0: {"head"}, 1: {"wing"}}),
        ("its crown is crimson and its wing feathers are blue.", {0: {"head"}, 1: {"wing"}}),
        ("this small bird is mostly yellow with a black bill.", {2: {"body"}, 3: {"beak"}}),
        ("a yellow bird with red wings", {2: {"body"}, 0: {"wing"}}),
        ("this flower has red petals and a yellow center", {0: {"petal"}, 2: {"center"}}),
        ("a red and black bird", {0: {None}, 3: {"body"}}),
    ],
)
def test_colour_parts_reads_which_part_each_colour_word_names(caption, parts):
    assert colour_parts(tokenize(caption), WORD_CLASS) == parts


def test_a_colour_that_an_unnamed_part_shares_is_not_swapped():
    captions = [
        "a red crown",
        "a bird with a red belly and blue wings",
        "red and blue",
        "a red crown, red belly",
    ]
    # red is the head's and the body's colour: only the caption naming both may swap it; blue is the wings',
    # swapped where a caption names the wings ("red and blue" names no part: nothing is swapped there).
    assert swappable(captions, WORD_CLASS) == [[], [1], [], [0]]


def test_unnamed_parts_keep_their_colour_in_the_pairs(split):
    """Against the scenes: a part the swapped caption does not name keeps its palette colour (the pairs
    recoloured 10% of such parts before `swappable`), and the named parts take the new colours."""
    classes = ground_colours(split.images, split.captions)
    swaps = make_swaps(split.images, split.captions, classes, variants=2, seed=0)
    kept, named = [], []
    for k in range(2):
        for i in range(len(split)):
            scene = synth.Scene.from_record(split.scenes[i])
            exact = _exact_edit(split, i, swaps.captions[k][i])
            core = synth.core_masks(scene, split.images.shape[1])
            for part, mask in core.items():
                if not mask.any():
                    continue
                got = synth.nearest_colour(swaps.images[k, i][mask].mean(axis=0))
                want = synth.nearest_colour(exact[mask].mean(axis=0))
                (named if want != scene.attributes[part] else kept).append(got == want)
    assert len(kept) > 200 and np.mean(kept) > 0.99
    assert len(named) > 500 and np.mean(named) > 0.98


def test_build_swaps_encodes_every_swapped_caption(split):
    text = TextModel.create(
        TextConfig(embed_dim=8, hidden_dim=6, cnn_width=4, image_size=16),
        Vocabulary.build(c for caps in split.captions for c in caps),
    )
    swaps, features, _ = build_swaps(split.images, split.captions, text, 3, seed=0, log=lambda m: None)
    images = swaps.images
    assert images.shape == (3, *split.images.shape) and features.shape == (3, len(split), 6)
    swaps = make_swaps(split.images, split.captions, ground_colours(split.images, split.captions), 3, 0)
    np.testing.assert_array_equal(images, swaps.images)
    expected = text.encode_texts([swaps.captions[1][5]])[0].numpy()
    np.testing.assert_allclose(features[1, 5], expected, rtol=1e-5, atol=1e-6)


def test_captions_without_colours_are_a_clear_error():
    images = np.zeros((30, 8, 8, 3), np.uint8)
    captions = [["a small bird on a branch"]] * 30
    classes = ground_colours(images, captions)
    assert classes == []
    with pytest.raises(ConfigError, match="gan.swap_weight: 0"):
        make_swaps(images, captions, classes, 1, 0)
    one = [ColourClass(("red",), (200.0, 40.0, 40.0))]
    with pytest.raises(ConfigError, match="at least two colours"):
        make_swaps(images, captions, one, 1, 0)


def test_synth_birds_pairs_are_unchanged(tmp_path):
    """The embedded default's trained model depends on these pairs: grounding, object mask, recoloured images
    and swapped captions on a small synth-birds set, bit for bit (hash recorded with `swappable`)."""
    import hashlib
    import json

    from sisgan.train.swaps import object_mask

    cfg = SynthConfig(n_images=200, n_classes=30, test_classes=6, captions_per_image=5)
    small = load_split(synth_shards(tmp_path, cfg, load_size=24, seed=5), "train")
    classes = ground_colours(small.images, small.captions)
    swaps = make_swaps(small.images, small.captions, classes, variants=2, seed=0)
    h = hashlib.sha256()
    h.update(json.dumps([[list(c.words), [round(v, 6) for v in c.rgb]] for c in classes]).encode())
    h.update(swaps.images.tobytes())
    h.update(json.dumps(swaps.captions).encode())
    h.update(object_mask(small.images).tobytes())
    assert (len(small), len(classes)) == (164, 10)
    assert h.hexdigest() == "690dc41f4ffa260bf0ae09f2a968831cc5cbdf96c8b8f75e1d38e3cdeb93a036"


# Section: the shaded model (photographs).


def _shaded_disc(rgb: tuple[float, float, float], backdrop: np.ndarray, size: int = 24) -> np.ndarray:
    """A centred disc of colour rgb lit from the top left (lightness 0.55x to 1.1x) on a textured backdrop."""
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2
    disc = (yy - c) ** 2 + (xx - c) ** 2 < (0.32 * size) ** 2
    light = 0.55 + 0.55 * (1 - (yy + xx) / (2 * size - 2))
    image = backdrop.astype(float).copy()
    image[disc] = np.clip(np.asarray(rgb) * light[disc, None], 0, 255)
    return np.rint(image).astype(np.uint8)


def _leaves(rng: np.random.Generator, size: int = 24) -> np.ndarray:
    base = rng.uniform([30, 70, 20], [90, 150, 60])
    return np.clip(base + rng.normal(0, 12, (size, size, 3)), 0, 255)


def test_shaded_recolour_reaches_the_whole_shaded_surface_and_keeps_its_shading():
    from sisgan.train.swaps import to_lab

    rng = np.random.default_rng(0)
    red, blue = np.array([200.0, 40, 40]), np.array([50.0, 70, 200])
    image = _shaded_disc(tuple(red), _leaves(rng))
    disc = np.abs(image.astype(int) - _shaded_disc((0, 0, 0), image)).sum(axis=2) > 0
    everywhere = np.ones(image.shape[:2], bool)
    moved = {}
    for model in ("flat", "shaded"):
        out = recolour(image, everywhere, [(red, blue)], colours=model)
        change = np.abs(out.astype(int) - image.astype(int)).max(axis=2)
        moved[model] = (change[disc] > 20).mean()
        if model == "shaded":
            lab_in, lab_out = to_lab(image)[disc], to_lab(out)[disc]
            hue = np.degrees(np.arctan2(lab_out[:, 2], lab_out[:, 1]))
            target = np.degrees(np.arctan2(*to_lab(blue)[[2, 1]]))
            assert np.abs(hue - target).max() < 15, "every shade of the disc turns blue"
            assert np.corrcoef(lab_in[:, 0], lab_out[:, 0])[0, 1] > 0.98, "the shading is kept"
            assert change[~disc].max() <= 3, "the leaves are not recoloured"
    # The flat model's tolerance (32 RGB) holds only the disc's mid-tones.
    assert moved["shaded"] > 0.95 and moved["flat"] < 0.6


def test_shaded_recolour_moves_half_members_the_whole_way():
    from sisgan.train.swaps import _FULL_MEMBER, _shift_lab, from_lab, membership, to_lab

    red, blue = np.array([200.0, 40, 40]), np.array([50.0, 70, 200])
    # Pixels at falling hue distances from red: members of it from 1 down to ~0.1.
    lab_red = to_lab(red)
    turns = np.radians([0.0, 10.0, 16.0, 28.0, 40.0])
    ab = np.stack([np.cos(turns), np.sin(turns)], axis=1) * np.hypot(*lab_red[1:])
    angle = np.arctan2(lab_red[2], lab_red[1])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    lab = np.concatenate([np.full((5, 1), lab_red[0]), ab @ rot.T], axis=1).astype(np.float32)
    image = np.clip(np.rint(from_lab(lab)), 0, 255).astype(np.uint8)[None]  # [1, 5, 3]
    m = membership(to_lab(image), lab_red)[0]
    assert m[0] > 0.95 and (np.diff(m) < 0).all() and m[2] >= _FULL_MEMBER > m[3] > 0
    out = to_lab(recolour(image, np.ones((1, 5)), [(red, blue)], colours="shaded"))[0]
    src = to_lab(image)[0]
    whole = _shift_lab(src, lab_red, to_lab(blue))
    moved = np.linalg.norm(out - src, axis=1) / np.linalg.norm(whole - src, axis=1)
    assert np.allclose(moved[:3], 1.0, atol=0.05), moved  # half a member or more: the whole way
    assert np.allclose(moved[3:], m[3:] / _FULL_MEMBER, atol=0.05), (moved, m)  # below: in proportion


def test_shaded_recolour_to_a_grey_leaves_no_colour_in_the_shadows():
    from sisgan.train.swaps import membership, to_lab

    rng = np.random.default_rng(0)
    red, white = np.array([200.0, 40, 40]), np.array([235.0, 235, 235])
    image = _shaded_disc(tuple(red), _leaves(rng))
    whole = membership(to_lab(image), to_lab(red)) >= 0.5  # the pixels that move the whole way
    out = to_lab(recolour(image, np.ones(image.shape[:2], bool), [(red, white)], colours="shaded"))
    chroma = np.hypot(out[..., 1], out[..., 2])[whole]
    lab_in = to_lab(image)[whole]
    assert whole.sum() > 50 and chroma.max() < 6, chroma.max()  # white in the light and in the shade
    assert np.corrcoef(lab_in[:, 0], out[whole][:, 0])[0, 1] > 0.98, "the shading is kept"


def test_shaded_grounding_finds_the_colours_of_shaded_parts_on_textured_backdrops():
    rng = np.random.default_rng(1)
    palette = {
        "red": (210, 40, 40),
        "yellow": (230, 200, 40),
        "purple": (140, 60, 190),
        "white": (235, 235, 235),
    }
    images, captions = [], []
    for i in range(240):
        word = list(palette)[i % 4]
        images.append(_shaded_disc(palette[word], _leaves(rng)))
        captions.append([f"this flower has {word} petals", f"the petals are {word} and round"])
    images = np.stack(images)
    by_word = {w: c for c in ground_colours(images, captions, colours="shaded") for w in c.words}
    assert set(by_word) == set(palette)
    for word, rgb in palette.items():
        # The mean of a shaded surface is darker than its lit colour; its hue and greyness are the word's.
        got = np.asarray(by_word[word].rgb)
        assert np.linalg.norm(got / got.max() - np.asarray(rgb) / max(rgb)) < 0.25, (word, got)
    swaps = make_swaps(images, captions, list({id(c): c for c in by_word.values()}.values()), 1, 0, "shaded")
    assert all(c not in caps for c, caps in zip(swaps.captions[0], captions, strict=True))
    moved = np.abs(swaps.images[0].astype(int) - images.astype(int)).max(axis=3) > 20
    assert moved.mean(axis=(1, 2)).min() > 0.15, "every pair recolours its disc"
