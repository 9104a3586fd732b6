"""Word-level conditioning: attention over the caption's words and the word-painted output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sisgan.config import GANConfig
from sisgan.errors import ConfigError
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
    out = paint(x, words, only_first)
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
    cfg = _cfg(epochs=2, swap_weight=10.0)
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
