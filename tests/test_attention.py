"""Word-level conditioning: attention over the caption's words and the word-painted output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sisgan.config import GANConfig
from sisgan.errors import ConfigError
from sisgan.losses import ColourWords, grounding_loss, part_loss
from sisgan.models import Generator
from sisgan.models.attention import WordAttention, WordPaint, WordReader, attend
from sisgan.train.gan import GanData, Trainer, fit
from sisgan.train.graphs import EagerStepGraph


def test_attention_ignores_padded_words_and_sums_to_one():
    torch.manual_seed(0)
    q, k = torch.randn(2, 5, 8), torch.randn(2, 4, 8)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    w = attend(q, k, mask)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 5))
    assert float(w[0, :, 2:].abs().max()) == 0.0
    # What a padded word says changes nothing.
    block = WordAttention(6, 3)
    x, words = torch.randn(2, 6, 4, 4), torch.randn(2, 4, 3)
    other = words.clone()
    other[:, 2:] = 100.0  # padding in row 0, real words in row 1
    torch.testing.assert_close(block(x, words, mask)[0], block(x, other, mask)[0])
    assert not torch.allclose(block(x, words, mask)[1], block(x, other, mask)[1])


def test_paint_colours_come_from_the_attended_word():
    torch.manual_seed(0)
    paint = WordPaint(5, 3)
    words = torch.randn(1, 2, 3)
    x = torch.randn(1, 5, 4, 4)
    only_first = torch.tensor([[True, False]])
    out, weights = paint(x, words, only_first)
    torch.testing.assert_close(weights, torch.tensor([1.0, 0.0]).expand(1, 16, 2))
    colour = torch.tanh(paint.colour(words[0, 0]))
    torch.testing.assert_close(out[0], colour[:, None, None].expand(3, 4, 4))  # one word: one flat colour
    assert out.abs().max() <= 1


def test_word_states_do_not_depend_on_the_padding_and_read_both_ways():
    torch.manual_seed(0)
    reader = WordReader(20, 8)
    tokens = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 2]])
    states = reader(tokens)
    assert states.shape == (2, 5, 16)
    longer = reader(torch.nn.functional.pad(tokens, (0, 3)))  # padded as a longer batch would be
    torch.testing.assert_close(longer[0, :3], states[0, :3])
    torch.testing.assert_close(longer[1, :5], states[1])
    # The backward half of the first word has read the last one (and the forward half has not).
    changed = reader(torch.tensor([[3, 4, 6, 0, 0]]))
    torch.testing.assert_close(changed[0, 0, :8], states[0, 0, :8])
    assert not torch.allclose(changed[0, 0, 8:], states[0, 0, 8:])


def test_a_generator_that_reads_words_needs_them_and_uses_them():
    torch.manual_seed(0)
    g = Generator(16, 10, 0.125, output="paint", conditioning="film", attention=True, vocab_size=30).eval()
    assert g.reads_words and g.vocab_size == 30 and not Generator(16, 10, 0.125).reads_words
    with pytest.raises(ConfigError, match="vocabulary size"):
        Generator(16, 10, 0.125, attention=True)
    x, phi = torch.rand(2, 3, 16, 16) * 2 - 1, torch.randn(2, 10)
    with pytest.raises(ValueError, match="pass its token ids"):
        g(x, phi, torch.zeros(2, g.cond_dim))
    tokens = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 2]])
    with torch.no_grad():
        g.to_rgb.bias[3] = 30.0  # mask open: the output is the paint
        a = g(x, phi, torch.zeros(2, g.cond_dim), tokens)[0]
        b = g(x, phi, torch.zeros(2, g.cond_dim), tokens.flip(0))[0]
    assert a.shape == x.shape and not torch.allclose(a, b), "the output follows the words"
    with torch.no_grad():
        *same, weights = g(x, phi, torch.zeros(2, g.cond_dim), tokens, with_attention=True)
    torch.testing.assert_close(same[0], a)
    assert weights.shape == (2, 16 * 16, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 256))
    assert float(weights[0, :, 3:].abs().max()) == 0.0, "no attention on padding"
    with pytest.raises(ValueError, match="without word attention"):
        Generator(16, 10, 0.125, output="mask")(x, phi, torch.zeros(2, 16), with_attention=True)


# Section: grounding the repaint's attention (gan.ground_weight).

RED, BLUE, GREEN, SKY = (1.0, -1.0, -1.0), (-1.0, -1.0, 1.0), (-1.0, 1.0, -1.0), (0.2, 0.4, 0.9)
# Token ids 2 and 5 name class 0 (red, e.g. "red" and "crimson"), 3 names class 1 (blue), 4 is no colour.
COLOURS = ColourWords(torch.tensor([RED, BLUE, GREEN]), torch.tensor([-1, -1, 0, 1, -1, 0, 2]))


def _target() -> torch.Tensor:
    """[1, 3, 4, 6]: sky at both ends of every row; the object's middle pixels red (row 0-1) and blue
    (row 2); row 3 green, a colour the caption does not name."""
    img = torch.tensor(SKY)[:, None, None].expand(3, 4, 6).clone()
    img[:, :2, 1:5] = torch.tensor(RED)[:, None, None]
    img[:, 2, 1:5] = torch.tensor(BLUE)[:, None]
    img[:, 3, 1:5] = torch.tensor(GREEN)[:, None]
    return img[None]


def _one_hot(word: torch.Tensor, length: int = 4) -> torch.Tensor:
    """Attention [1, P, L] that puts each pixel (index into `word` [P]) wholly on one word."""
    return torch.nn.functional.one_hot(word, length).float()[None]


def test_grounding_pulls_each_object_pixel_onto_the_word_of_its_target_colour():
    target, tokens = _target(), torch.tensor([[2, 3, 4, 5]])  # "red", "blue", "beak", "crimson"
    rows = torch.arange(4).repeat_interleave(6)  # [P]: each pixel's row
    right = _one_hot(torch.where(rows < 2, 0, 1))  # red rows -> "red", the rest -> "blue"
    assert float(grounding_loss(right, target, tokens, COLOURS)) == pytest.approx(0.0, abs=1e-5)
    synonym = _one_hot(torch.where(rows < 2, 3, 1))  # "crimson" names red as well
    assert float(grounding_loss(synonym, target, tokens, COLOURS)) == pytest.approx(0.0, abs=1e-5)
    wrong = _one_hot(torch.where(rows < 2, 1, 0))  # the colours crossed over
    assert float(grounding_loss(wrong, target, tokens, COLOURS)) > 10
    uniform = torch.full((1, 24, 4), 0.25)  # red pixels: 2 of 4 words right, blue: 1 of 4
    expected = -(np.log(0.5) + np.log(0.25)) / 2  # the 8 red pixels weigh as much as the 4 blue ones
    assert float(grounding_loss(uniform, target, tokens, COLOURS)) == pytest.approx(expected, rel=1e-5)
    # The sky and the green row (no word names it) take no part: what they attend to changes nothing.
    free = (rows == 3) | (torch.arange(24) % 6 == 0) | (torch.arange(24) % 6 == 5)
    elsewhere = torch.where(free[None, :, None], torch.tensor([0.0, 0.0, 1.0, 0.0]), right)
    assert float(grounding_loss(elsewhere, target, tokens, COLOURS)) == pytest.approx(0.0, abs=1e-5)
    # One wrong blue pixel costs what two wrong red ones do: each region's mean counts once.
    one_blue = right.clone()
    one_blue[0, 13] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # row 2, a blue pixel reads "red"
    two_red = right.clone()
    two_red[0, [1, 2]] = torch.tensor([0.0, 1.0, 0.0, 0.0])  # row 0, red pixels read "blue"
    blue_cost, red_cost = (float(grounding_loss(a, target, tokens, COLOURS)) for a in (one_blue, two_red))
    assert blue_cost > 1 and blue_cost == pytest.approx(red_cost)


def test_grounding_reads_only_the_colours_the_caption_names():
    uniform = torch.full((1, 24, 4), 0.25)
    no_colour = grounding_loss(uniform, _target(), torch.tensor([[4, 4, 0, 0]]), COLOURS)
    assert float(no_colour) == 0.0  # nothing to ground, and no NaN from an empty mean
    # "green" (id 6) and padding: only the green row counts, and it spreads over the 2 real words.
    only_green = grounding_loss(torch.full((1, 24, 4), 0.5), _target(), torch.tensor([[6, 4, 0, 0]]), COLOURS)
    assert float(only_green) == pytest.approx(-np.log(0.5), rel=1e-5)


# Section: training with words.


def _word_data(n: int = 24, size: int = 20, text_dim: int = 10, swaps: int = 0) -> GanData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    feats = rng.normal(size=(n, 3, text_dim)).astype(np.float32)
    tokens = rng.integers(2, 30, (n, 3, 6))
    tokens[:, :, 4:] = 0  # padding
    data = GanData(images, feats, np.full(n, 3), images[:2], feats[:3, 0], ["a", "b", "c"])
    data.tokens, data.sample_tokens = tokens, tokens[:3, 0]
    data.vocab_size = 30
    if swaps:
        data.swap_images = rng.integers(0, 256, (swaps, n, size, size, 3), dtype=np.uint8)
        data.swap_features = rng.normal(size=(swaps, n, text_dim)).astype(np.float32)
        data.swap_tokens = rng.integers(2, 30, (swaps, n, 6))
    return data


def _cfg(**kw) -> GANConfig:
    base = {"image_size": 16, "width": 0.125, "batch_size": 8, "epochs": 1, "lr_decay_every": 1}
    return GANConfig.from_dict(base | {"output": "paint", "attention": True} | kw)


def test_training_reads_the_drawn_captions_words_and_the_swapped_ones():
    data = _word_data(swaps=2)
    trainer = Trainer(_cfg(swap_weight=10.0, flip=False), data)
    _, idx, both = next(trainer.batches(0))
    trainer.noise_gen.manual_seed(5)
    batch = trainer.make_batch(both, idx)
    gen = torch.Generator().manual_seed(5)  # the caption draw make_batch made
    j = (torch.rand(len(idx), generator=gen) * trainer.counts[idx]).long()
    assert torch.equal(batch.tokens, trainer.tokens[idx, j])
    assert torch.equal(batch.swap_tokens, trainer.swap_tokens[0, idx[:4]])
    before = trainer.g.reader.embed.weight.detach().clone()
    stats = trainer.train_step(both, idx)
    assert all(torch.isfinite(v) for v in stats.values())
    assert not torch.equal(trainer.g.reader.embed.weight, before), "G trains its own word reader"
    grid = trainer.sample_grid()
    assert grid.shape == (2, 3, 16, 16, 3)


def test_graphed_word_step_trains_exactly_like_the_eager_one():
    cfg = _cfg(epochs=2, swap_weight=10.0, bf16=False)  # fp32: see test_gan's graphed-step test
    eager, graphed = Trainer(cfg, _word_data(swaps=2), seed=5), Trainer(cfg, _word_data(swaps=2), seed=5)
    graphed.graphed = True
    graphed._new_graph = EagerStepGraph  # type: ignore[method-assign]
    for epoch in (1, 2):
        rows = eager.run_epoch(epoch), graphed.run_epoch(epoch)
        assert rows[0]["g_loss"] == rows[1]["g_loss"]


def test_words_are_training_data_and_required(tmp_path):
    fit(Trainer(_cfg(), _word_data(), seed=1), tmp_path / "w.pt")
    other = _word_data()
    other.tokens = other.tokens[::-1].copy()
    assert not Trainer(_cfg(), other, seed=1).try_resume(tmp_path / "w.pt", log=lambda m: None)
    plain = _word_data()
    plain.tokens = None
    with pytest.raises(ConfigError, match="need the captions' tokens"):
        Trainer(_cfg(), plain)
    with pytest.raises(ConfigError, match="swapped captions' tokens"):
        Trainer(_cfg(swap_weight=1.0), _swap_without_tokens())


def _swap_without_tokens() -> GanData:
    data = _word_data(swaps=1)
    data.swap_tokens = None
    return data


def _ground_data() -> GanData:
    data = _word_data(swaps=2)
    data.colour_rgb = np.array([[230, 20, 20], [20, 20, 230]], np.float32)
    data.word_class = np.full(30, -1)
    data.word_class[[2, 3]] = [0, 1]
    # Red objects on a grey backdrop whose captions say "red" (token 2) somewhere.
    data.images[:] = 128
    data.images[:, 5:15, 5:15] = (230, 20, 20)
    data.swap_images[:] = data.images
    data.tokens[:, :, 0], data.swap_tokens[:, :, 0] = 2, 2
    return data


def test_grounding_term_trains_the_repaint_attention():
    cfg = _cfg(swap_weight=10.0, ground_weight=1.0, flip=False)
    trainer = Trainer(cfg, _ground_data())
    _, idx, both = next(trainer.batches(0))
    batch = trainer.make_batch(both, idx)
    gen = trainer.loss.generate(batch)
    _, stats = trainer.loss.g_phase(batch, gen)
    assert float(stats["ground"]) > 0
    # The term reaches the repaint's query (where a pixel looks) and the word reader, not the mask.
    ground = grounding_loss(gen.attention, batch.real, gen.tokens, trainer.loss.colours)
    ground.backward()
    assert trainer.g.paint.query.weight.grad.abs().sum() > 0
    assert trainer.g.reader.embed.weight.grad.abs().sum() > 0
    assert trainer.g.to_rgb.weight.grad is None
    plain = Trainer(_cfg(swap_weight=10.0, flip=False), _ground_data())
    assert float(plain.train_step(both, idx)["ground"]) == 0.0, "off: reported as 0"


def test_grounding_needs_the_paint_output_and_the_swap_pairs():
    with pytest.raises(ConfigError, match="ground_weight.*needs output: paint"):
        _cfg(output="mask", swap_weight=1.0, ground_weight=1.0)
    with pytest.raises(ConfigError, match="ground_weight.*swap_weight > 0"):
        _cfg(ground_weight=1.0)


@pytest.mark.parametrize(
    ("term", "missing"), [("ground_weight", "word_class"), ("part_weight", "colour_rgb")]
)
def test_grounding_and_part_terms_need_the_swap_pairs_colour_classes(term, missing):
    data = _ground_data()
    setattr(data, missing, None)
    with pytest.raises(ConfigError, match="colour classes"):
        Trainer(_cfg(swap_weight=1.0, **{term: 1.0}), data)


# Section: every part alike in the pixel loss (gan.part_weight).


def _recoloured(img: torch.Tensor, rows: slice, colour: tuple[float, float, float]) -> torch.Tensor:
    """img [1, 3, 4, 6] with the object's pixels of `rows` painted `colour`."""
    out = img.clone()
    out[0, :, rows, 1:5] = torch.tensor(colour)[:, None, None]
    return out


def test_part_term_weighs_every_colour_region_of_the_target_alike():
    source = _target()  # red rows 0-1 (8 pixels), blue row 2, green row 3 (4 pixels each)
    target = _recoloured(source, slice(2, 3), RED)  # the edit: blue -> red, so red is 12 pixels, green 4
    assert float(part_loss(target, target, source, COLOURS)) == 0.0
    sky = target.clone()
    sky[0, :, :, 0] = torch.tensor(RED)[:, None]
    assert float(part_loss(sky, target, source, COLOURS)) == 0.0, "off the object: the swap term's"
    # Repainting the whole 12-pixel red region or the 4-pixel green one blue costs the same (equal colour
    # distance, 8/3 per pixel): a mean per region, then over the target's 2 regions.
    red_lost = float(part_loss(_recoloured(target, slice(0, 3), BLUE), target, source, COLOURS))
    green_lost = float(part_loss(_recoloured(target, slice(3, 4), BLUE), target, source, COLOURS))
    assert red_lost == pytest.approx(green_lost) and red_lost == pytest.approx(8 / 3 / 2)
    # The edit left undone (G returns the source): 4 of the red region's 12 pixels are wrong.
    assert float(part_loss(source, target, source, COLOURS)) == pytest.approx(8 / 3 * 4 / 12 / 2)


def test_part_term_trains_the_generator_and_needs_the_swap_pairs():
    trainer = Trainer(_cfg(swap_weight=10.0, part_weight=1.0, flip=False), _ground_data())
    _, idx, both = next(trainer.batches(0))
    stats = trainer.train_step(both, idx)
    assert float(stats["part"]) > 0  # an untrained G's mask is open a little everywhere
    plain = Trainer(_cfg(swap_weight=10.0, flip=False), _ground_data())
    assert float(plain.train_step(both, idx)["part"]) == 0.0, "off: reported as 0"
    with pytest.raises(ConfigError, match="part_weight.*swap_weight > 0"):
        _cfg(part_weight=1.0)
