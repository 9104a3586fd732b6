"""Tokenizer, vocabulary, text encoder φ(t), VSE image encoders, ranking loss and pretraining."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sisgan.config import SynthConfig, TextConfig
from sisgan.data.shards import load_split
from sisgan.errors import ConfigError, DataError
from sisgan.eval.retrieval import r_precision, recall_at_k
from sisgan.text.encoder import TextEncoder, init_from_word_vectors
from sisgan.text.model import TextModel, load_features, save_features
from sisgan.text.tokenizer import Vocabulary, tokenize
from sisgan.train.vse import pairwise_ranking_loss, pretrain

# Section: tokenizer and vocabulary.


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("This bird has a RED crown.", ["this", "bird", "has", "a", "red", "crown"]),
        ("", []),
        ("?!... ---", []),
        ("Café crème, naïve wing", ["cafe", "creme", "naive", "wing"]),
        ("鳥 red", ["red"]),
        ("wing-feathers: 2 tone", ["wing", "feathers", "2", "tone"]),
    ],
)
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens


def test_over_long_captions_are_truncated():
    assert len(tokenize("red " * 80, max_words=50)) == 50
    vocab = Vocabulary.build(["red blue"], max_words=3)
    ids, lengths = vocab.encode_batch(["red blue red blue red", "blue"])
    assert ids.shape == (2, 3) and lengths.tolist() == [3, 1]


def test_vocabulary_build_encode_and_min_count():
    vocab = Vocabulary.build(["a red bird", "a blue bird", "a bird"], min_count=2)
    assert vocab.words == ["<pad>", "<unk>", "a", "bird"]
    assert vocab.encode("a red bird") == [2, 1, 3]
    assert vocab.unknown_words("a red zebra bird") == ["red", "zebra"]
    assert vocab.encode("") == [1] and vocab.encode("!!!") == [1]  # every sequence has one step
    ids, lengths = vocab.encode_batch(["a bird", "", "a a a bird"])
    assert ids.tolist() == [[2, 3, 0, 0], [1, 0, 0, 0], [2, 2, 2, 3]] and lengths.tolist() == [2, 1, 4]


def test_vocabulary_errors():
    with pytest.raises(DataError, match="min_count"):
        Vocabulary.build(["a b"], min_count=5)
    with pytest.raises(DataError, match="must start with"):
        Vocabulary(["a", "b"])


# Section: the encoder.


def test_packed_sequences_match_unpadded_one_by_one():
    torch.manual_seed(0)
    vocab = Vocabulary.build(["a red bird with blue wings and a yellow beak", "grey"])
    enc = TextEncoder(len(vocab), 16, 12).eval()
    texts = ["a red bird", "grey", "a bird with blue wings and a yellow beak", ""]
    ids, lengths = vocab.encode_batch(texts)
    batched = enc(torch.from_numpy(ids), torch.from_numpy(lengths))
    assert batched.shape == (4, 12)
    for i, t in enumerate(texts):
        one = torch.tensor([vocab.encode(t)])
        alone = enc(one, torch.tensor([one.shape[1]]))
        torch.testing.assert_close(batched[i], alone[0], rtol=1e-5, atol=1e-6)
    # Padding must not leak: more padding, same output.
    padded = torch.cat([torch.from_numpy(ids), torch.zeros(4, 5, dtype=torch.long)], 1)
    torch.testing.assert_close(enc(padded, torch.from_numpy(lengths)), batched)


def _tiny_cfg(**kw) -> TextConfig:
    base = {"embed_dim": 16, "hidden_dim": 12, "cnn_width": 8, "image_size": 16, "batch_size": 8, "epochs": 1}
    return TextConfig.from_dict(base | kw)


def test_text_model_save_load_equality(tmp_path):
    torch.manual_seed(0)
    vocab = Vocabulary.build(["a red bird", "blue wings"])
    model = TextModel.create(_tiny_cfg(), vocab).eval()
    model.save(tmp_path / "text")
    loaded = TextModel.load(tmp_path / "text")
    assert loaded.vocab == vocab and loaded.config == model.config
    texts = ["a red bird", "blue wings and a zebra"]
    torch.testing.assert_close(loaded.encode_texts(texts), model.encode_texts(texts), rtol=0, atol=0)
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(loaded.encode_images(images), model.encode_images(images), rtol=0, atol=0)
    for k, v in model.text_encoder.state_dict().items():
        assert torch.equal(v, loaded.text_encoder.state_dict()[k])


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="run `dvc repro pretrain_text`"):
        TextModel.load(tmp_path)


def test_caption_features_align_and_round_trip(tmp_path):
    torch.manual_seed(0)
    vocab = Vocabulary.build(["a red bird", "blue wings"])
    model = TextModel.create(_tiny_cfg(), vocab).eval()
    captions = [["a red bird", "blue wings"], ["blue wings"], ["a bird", "red", "wings"]]
    feats, counts = model.caption_features(captions)
    assert feats.shape == (3, 3, 12) and counts.tolist() == [2, 1, 3]
    torch.testing.assert_close(torch.from_numpy(feats[2, 1]), model.encode_texts(["red"])[0])
    assert not feats[1, 1:].any(), "padding rows are zero"
    save_features(tmp_path / "f.npz", ["x", "y", "z"], feats, counts)
    f2, c2 = load_features(tmp_path / "f.npz", ["x", "y", "z"])
    assert np.array_equal(f2, feats) and np.array_equal(c2, counts)
    with pytest.raises(DataError, match="not aligned"):
        load_features(tmp_path / "f.npz", ["x", "z", "y"])


def test_word_vectors_initialise_embeddings(tmp_path):
    vocab = Vocabulary.build(["red bird", "blue"])
    vec = tmp_path / "w.vec"
    vec.write_text("3 4\nred 1 2 3 4\nbird 0.5 0.5 0.5 0.5\nzebra 9 9 9 9\n")
    enc = TextEncoder(len(vocab), 4, 6)
    assert init_from_word_vectors(enc, vec, vocab) == 2
    assert enc.embed.weight[vocab.index["red"]].tolist() == [1, 2, 3, 4]
    bad = tmp_path / "bad.vec"
    bad.write_text("red 1 2 3\n")
    with pytest.raises(ConfigError, match="3-d vectors, text.embed_dim is 4"):
        init_from_word_vectors(enc, bad, vocab)
    with pytest.raises(ConfigError, match="not found"):
        init_from_word_vectors(enc, tmp_path / "absent.vec", vocab)


def test_vgg_encoder_without_local_weights_names_the_fix(tmp_path):
    cfg = _tiny_cfg(image_encoder="vgg16")
    with pytest.raises(
        ConfigError, match=r"text.vgg_weights is not set; download https://download.pytorch.org"
    ):
        TextModel.create(cfg, Vocabulary.build(["a"]))
    cfg = _tiny_cfg(image_encoder="vgg16", vgg_weights=str(tmp_path / "nope.pth"))
    with pytest.raises(ConfigError, match="nope.pth not found"):
        TextModel.create(cfg, Vocabulary.build(["a"]))


@pytest.mark.slow
def test_vgg_encoder_with_local_weights(tmp_path):
    from torchvision.models import vgg16

    torch.save(vgg16().state_dict(), tmp_path / "vgg16.pth")
    cfg = _tiny_cfg(image_encoder="vgg16", vgg_weights=str(tmp_path / "vgg16.pth"))
    model = TextModel.create(cfg, Vocabulary.build(["a"]))
    out = model.image_encoder(torch.rand(2, 3, 16, 16) * 2 - 1)
    assert out.shape == (2, 12)
    trainable = [n for n, p in model.image_encoder.named_parameters() if p.requires_grad]
    assert trainable == ["proj.weight", "proj.bias"], "VGG is frozen; only the map to φ space trains"


# Section: loss and retrieval.


def test_ranking_loss_is_zero_for_separated_pairs_and_positive_otherwise():
    e = torch.eye(4)
    assert float(pairwise_ranking_loss(e, e, 0.2)) == 0.0
    # Swapped texts: every positive scores below a negative.
    loss = pairwise_ranking_loss(e, e.flip(0), 0.2)
    assert float(loss) > 0
    # Gradient pulls matching pairs together.
    img = torch.randn(6, 8, requires_grad=True)
    txt = torch.randn(6, 8)
    pairwise_ranking_loss(img, txt).backward()
    step = img.detach() - 0.1 * img.grad
    assert float(pairwise_ranking_loss(step, txt)) < float(pairwise_ranking_loss(img.detach(), txt))


def test_recall_at_k():
    e = torch.eye(5)
    r = recall_at_k(e, e, ks=(1, 5))
    assert r["t2i_r1"] == r["i2t_r1"] == 1.0 and r["chance_r1"] == pytest.approx(0.2)
    shifted = torch.roll(e, 1, dims=0)
    r = recall_at_k(e, shifted, ks=(1, 5))
    assert r["t2i_r1"] == 0.0 and r["t2i_r5"] == 1.0


def test_r_precision_ranks_the_true_caption_among_100():
    torch.manual_seed(0)
    images = torch.randn(400, 16)
    state = torch.random.get_rng_state()
    perfect = r_precision(images, images)
    assert perfect == {"r_precision": 1.0, "chance_r_precision": 0.01}
    assert torch.equal(torch.random.get_rng_state(), state), "the draw must leave torch's RNG alone"
    unrelated = r_precision(images, torch.randn(400, 16))["r_precision"]
    assert unrelated < 0.05  # chance is 0.01
    # Texts that match only a blurred copy of their image: between the two.
    noisy = r_precision(images, images + 1.5 * torch.randn(400, 16))["r_precision"]
    assert 0.05 < noisy < 1.0
    # With fewer than 100 images, every other image's text is a distractor.
    assert r_precision(images[:10], images[:10])["chance_r_precision"] == pytest.approx(0.1)
    # The true caption must beat every distractor: a text equal to its image's neighbour's is a miss.
    e = torch.eye(4)
    assert r_precision(e, torch.roll(e, 1, dims=0))["r_precision"] == 0.0


# Section: pretraining.


@pytest.fixture(scope="module")
def small_synth(tmp_path_factory):
    from conftest import synth_shards

    cfg = SynthConfig(n_images=360, n_classes=72, test_classes=12, captions_per_image=6)
    out = tmp_path_factory.mktemp("shards")
    synth_shards(out, cfg, load_size=36)
    return load_split(out, "train"), load_split(out, "test")


@pytest.mark.slow
def test_tiny_pretraining_recall_is_far_above_chance(small_synth):
    train, test = small_synth
    cfg = TextConfig(
        embed_dim=32, hidden_dim=32, cnn_width=16, image_size=32, batch_size=32, epochs=25, lr=1e-3
    )
    rows = []
    model, history = pretrain(cfg, train, test, seed=0, on_epoch=rows.append)
    assert rows == history and len(history) == 25
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    final = history[-1]
    # 12 test classes of 5 near-identical-attribute birds: recall@1 tops out near 1/5.
    assert final["t2i_r1"] >= 4 * final["chance_r1"], final
    assert final["i2t_r1"] >= 2 * final["chance_r1"], final


def test_pretraining_bad_params(small_synth):
    train, test = small_synth
    with pytest.raises(ConfigError, match="text.image_size = 64 is larger than the stored images"):
        pretrain(_tiny_cfg(image_size=64), train, test)
    with pytest.raises(ConfigError, match="batch_size"):
        TextConfig.from_dict({"batch_size": 1})
    with pytest.raises(ConfigError, match="text.margin"):
        TextConfig.from_dict({"margin": -0.2})
    with pytest.raises(ConfigError, match="image_encoder = 'resnet'"):
        TextConfig.from_dict({"image_encoder": "resnet"})
    with pytest.raises(ConfigError, match="text.device"):
        TextConfig.from_dict({"device": "gpu"})
