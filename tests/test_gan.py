"""SISGAN networks, losses and the training loop (determinism, resume, DDP, bad params)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sisgan.config import GANConfig
from sisgan.errors import ConfigError
from sisgan.losses import (
    Batch,
    DiscriminatorStep,
    LossWeights,
    SisganLoss,
    kl_divergence,
    mismatched_and_relevant,
)
from sisgan.models import Discriminator, Generator
from sisgan.models.blocks import ResidualBlock, TextResidualBlock
from sisgan.train import checkpoint
from sisgan.train.gan import GanData, NonFiniteLoss, Trainer, fit, lr_at
from sisgan.train.graphs import EagerStepGraph, TrainingState

# Section: networks.


@pytest.mark.parametrize(("width", "size"), [(0.25, 16), (0.25, 32), (0.5, 48), (1.0, 64)])
def test_shapes(width, size):
    g, d = Generator(size, 20, width), Discriminator(size, 20, width)
    x, t = torch.rand(3, 3, size, size) * 2 - 1, torch.randn(3, 20)
    out, mu, log_sigma = g(x, t, torch.randn(3, g.cond_dim))
    assert out.shape == x.shape and mu.shape == log_sigma.shape == (3, g.cond_dim)
    assert out.abs().max() <= 1
    assert d(out, t).shape == (3,)
    assert d.encode(x).shape == (3, round(512 * width), size // 16, size // 16)


def test_paper_profile_layer_shapes_and_parameter_counts():
    g, d = Generator(64, 300, 1.0), Discriminator(64, 300, 1.0)
    convs = [m for m in g.modules() if isinstance(m, nn.Conv2d)]
    shapes = [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs]
    assert shapes[:3] == [(3, 128, 3, 1), (128, 256, 4, 2), (256, 512, 4, 2)]  # encoder -> 16x16x512
    assert shapes[3] == (640, 512, 3, 1)  # fusion of 512 image + 128 condition channels
    assert shapes[4:12] == [(512, 512, 3, 1)] * 8  # 4 residual blocks
    assert shapes[12:] == [(512, 256, 3, 1), (256, 128, 3, 1), (128, 3, 3, 1)]  # decoder
    assert (g.ca.mu[0].in_features, g.ca.mu[0].out_features) == (300, 128)
    d_convs = [
        (c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0])
        for c in d.modules()
        if isinstance(c, nn.Conv2d)
    ]
    assert d_convs[:4] == [(3, 64, 4, 2), (64, 128, 4, 2), (128, 256, 4, 2), (256, 512, 4, 2)]
    assert d_convs[-2:] == [(640, 512, 1, 1), (512, 1, 4, 1)]
    assert (d.compress[0].in_features, d.compress[0].out_features) == (300, 128)
    assert sum(p.numel() for p in g.parameters()) == 26_014_851
    assert sum(p.numel() for p in d.parameters()) == 3_937_217


def test_film_conditioning_modulates_every_residual_block():
    torch.manual_seed(0)
    g = Generator(32, 20, 0.25, conditioning="film")
    assert all(isinstance(b, TextResidualBlock) for b in g.blocks)
    block = g.blocks[0]
    x, cond = torch.randn(2, block.film.out_features // 2, 8, 8), torch.randn(2, g.cond_dim)
    plain = ResidualBlock(x.shape[1])
    plain.load_state_dict({k: v for k, v in block.state_dict().items() if not k.startswith("film.")})
    nn.init.zeros_(block.film.weight)
    nn.init.zeros_(block.film.bias)
    assert torch.allclose(block(x, cond), plain(x)), "γ = β = 0 is the paper's block"
    nn.init.normal_(block.film.weight)
    assert not torch.allclose(block(x, cond), block(x, cond.flip(0))), "the block reads the condition"
    out, _, _ = g(torch.rand(2, 3, 32, 32) * 2 - 1, torch.randn(2, 20), torch.randn(2, g.cond_dim))
    assert out.shape == (2, 3, 32, 32)
    with pytest.raises(ConfigError, match="gan.conditioning = 'attention' is unknown"):
        Generator(32, 20, 0.25, conditioning="attention")


def test_vgg_encoder_is_frozen_dilated_at_stride_4(tmp_path):
    g = Generator(32, 20, 0.25, encoder="vgg16bn", load_vgg=False)
    layers = list(g.encoder.net)
    pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 2, "the third max-pool is dropped: stride 4 -> 16x16 at 64x64"
    dilated = [m for m in layers if isinstance(m, nn.Conv2d) and m.dilation == (2, 2)]
    assert len(dilated) == 3, "conv4_1..conv4_3 are dilated (not the BatchNorm layers)"
    assert not any(p.requires_grad for p in g.encoder.parameters())
    out = g.encoder(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert out.shape == (2, 512, 8, 8)
    with pytest.raises(ConfigError, match="gan.vgg_weights is not set; download"):
        Generator(32, 20, 0.25, encoder="vgg16bn")


# Section: losses.


def test_mismatched_and_relevant_texts():
    t = torch.arange(6.0)[:, None]
    mis, rel = mismatched_and_relevant(t)
    assert mis.flatten().tolist() == [5, 0, 1, 2, 3, 4]  # every row is another image's caption
    assert rel.flatten().tolist() == [1, 2, 0, 3, 4, 5]  # first half mismatching, second half matching


def test_kl_is_zero_for_the_prior_and_positive_elsewhere():
    z = torch.zeros(4, 8)
    assert float(kl_divergence(z, z)) == 0.0
    assert float(kl_divergence(z + 1, z)) > 0 and float(kl_divergence(z, z + 0.5)) > 0


def test_discriminator_step_equals_separate_passes():
    torch.manual_seed(0)
    d = Discriminator(16, 8, 0.25).train()
    real, fake = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    t, m, r = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)
    a = DiscriminatorStep(d)(real, fake, t, m, r)
    b = (d(real, t), d(real, m), d(fake, r))
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)


class _FixedG(nn.Module):
    """A stand-in G that returns a given image: the loss terms can then be checked by hand."""

    def __init__(self, fake: torch.Tensor, cond_dim: int = 5) -> None:
        super().__init__()
        self.fake, self.cond_dim = fake, cond_dim

    def forward(self, image, text, noise):  # noqa: ANN001, ANN201
        mu = torch.arange(len(image) * self.cond_dim, dtype=torch.float32).view(len(image), -1) / 10
        return self.fake, mu, -mu


def _loss(fake: torch.Tensor, d: Discriminator, **weights) -> SisganLoss:
    return SisganLoss(_FixedG(fake), DiscriminatorStep(d), d, LossWeights(**weights))


def test_loss_terms_follow_the_paper():
    torch.manual_seed(0)
    d = Discriminator(16, 8, 0.25)
    real, t = torch.randn(4, 3, 16, 16), torch.randn(4, 8)
    batch = Batch(real, t, torch.zeros(4, 5))
    loss = _loss(real.clone(), d, kl=2.0)
    gen = loss.generate(batch)
    mis, rel = mismatched_and_relevant(t)
    assert torch.equal(gen.mismatch, mis) and torch.equal(gen.relevant, rel)
    d_total, d_parts = loss.d_phase(batch, gen)
    torch.testing.assert_close(d_total, d_parts["d_real"] + d_parts["d_mismatch"] + d_parts["d_fake"])
    # The D phase's three scores are the paper's pairs: (x, t) real, (x, t̂) and (G(x, t̄), t̄) fake.
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    d.eval()  # batch-norm statistics fixed, so the by-hand scores see the same D
    _, d_parts = loss.d_phase(batch, gen)
    torch.testing.assert_close(d_parts["d_real"], bce(d(real, t), torch.ones(4)))
    torch.testing.assert_close(d_parts["d_mismatch"], 0.5 * bce(d(real, mis), torch.zeros(4)))
    torch.testing.assert_close(d_parts["d_fake"], 0.5 * bce(d(real, rel), torch.zeros(4)))
    g_total, g_parts = loss.g_phase(batch, gen)
    torch.testing.assert_close(g_parts["g_adv"], bce(d(real, rel), torch.ones(4)))
    torch.testing.assert_close(g_parts["kl"], kl_divergence(gen.mu, gen.log_sigma))
    torch.testing.assert_close(g_total, g_parts["g_adv"] + 2.0 * g_parts["kl"])
    assert float(g_parts["recon"]) == 0.0  # output == input on the matching half
    off = _loss(real + 0.1, d, kl=2.0, recon=10.0)
    g_off, parts_off = off.g_phase(batch, off.generate(batch))
    assert float(parts_off["recon"]) == pytest.approx(0.1)
    torch.testing.assert_close(g_off, parts_off["g_adv"] + 2.0 * parts_off["kl"] + 10.0 * parts_off["recon"])


def test_g_phase_leaves_the_discriminator_out_of_the_gradient():
    torch.manual_seed(0)
    d = Discriminator(16, 8, 0.25)
    fake = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_(True)
    loss = _loss(fake, d)
    batch = Batch(torch.rand(4, 3, 16, 16) * 2 - 1, torch.randn(4, 8), torch.zeros(4, 5))
    g_loss, _ = loss.g_phase(batch, loss.generate(batch))
    g_loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0, "G's output gets the critic's gradient"
    assert all(p.grad is None for p in d.parameters()), "D takes none"
    assert all(p.requires_grad for p in d.parameters()), "and is trainable again afterwards"


# Section: training.


def _data(n: int = 24, size: int = 20, text_dim: int = 10, seed: int = 0) -> GanData:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    feats = rng.normal(size=(n, 3, text_dim)).astype(np.float32)
    counts = np.full(n, 3)
    counts[0] = 2
    return GanData(images, feats, counts, images[:2], feats[:3, 0], ["a", "b", "c"])


def _swap_data(variants: int = 2, **kw) -> GanData:
    """_data with `variants` colour-swap sets: random edits and swapped-caption features."""
    data = _data(**kw)
    rng = np.random.default_rng(99)
    n, size, _, _ = data.images.shape
    data.swap_images = rng.integers(0, 256, (variants, n, size, size, 3), dtype=np.uint8)
    data.swap_features = rng.normal(size=(variants, n, data.features.shape[-1])).astype(np.float32)
    return data


def _cfg(**kw) -> GANConfig:
    base = {"image_size": 16, "width": 0.125, "batch_size": 8, "epochs": 2, "lr_decay_every": 1}
    return GANConfig.from_dict(base | kw)


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {f"g.{k}": v.clone() for k, v in trainer.g.state_dict().items()} | {
        f"d.{k}": v.clone() for k, v in trainer.d.state_dict().items()
    }


def test_one_step_gives_finite_losses_and_changes_both_nets():
    trainer = Trainer(_cfg(), _data())
    before = _state(trainer)
    _, idx, real = next(trainer.batches(0))
    stats = trainer.train_step(real, idx)
    assert all(torch.isfinite(v) for v in stats.values())
    after = _state(trainer)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("g."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("d."))


def test_seeded_training_is_deterministic_on_cpu():
    a = Trainer(_cfg(), _data(), seed=3)
    b = Trainer(_cfg(), _data(), seed=3)
    a.run_epoch(1)
    b.run_epoch(1)
    sa, sb = _state(a), _state(b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = Trainer(_cfg(), _data(), seed=4)
    c.run_epoch(1)
    assert any(not torch.equal(sa[k], _state(c)[k]) for k in sa)


def _graphed(trainer: Trainer) -> list[int]:
    """Send a CPU trainer through the graphed path with the CUDA-free graph double; returns a list that
    counts the captures."""
    captures: list[int] = []

    def new_graph() -> EagerStepGraph:
        captures.append(1)
        return EagerStepGraph()

    trainer.graphed = True
    trainer._new_graph = new_graph  # type: ignore[method-assign]
    return captures


@pytest.mark.parametrize("swap_weight", [0.0, 10.0])
def test_graphed_step_trains_exactly_like_the_eager_step(swap_weight):
    # Two epochs with the lr halved in between: the warm-up before each capture must leave no trace
    # (weights, batch-norm statistics, Adam moments and step count restored in place), and a new lr
    # must be captured again. With colour swaps, their targets and texts are graph inputs too.
    # fp32: a capture needs autocast's weight-cast cache off, and on a bf16 CPU that alone picks other
    # kernels (losses differ by 2e-5), which says nothing about the graph.
    cfg = _cfg(epochs=2, lr_decay_every=1, swap_weight=swap_weight, bf16=False)
    eager, graphed = Trainer(cfg, _swap_data(), seed=5), Trainer(cfg, _swap_data(), seed=5)
    captures = _graphed(graphed)
    for epoch in (1, 2):
        rows = eager.run_epoch(epoch), graphed.run_epoch(epoch)
        assert rows[0]["d_loss"] == rows[1]["d_loss"] and rows[0]["g_loss"] == rows[1]["g_loss"]
    assert len(captures) == 2, "captured once per lr"
    se, sg = _state(eager), _state(graphed)
    assert all(torch.equal(se[k], sg[k]) for k in se)
    for opt_e, opt_g in ((eager.opt_g, graphed.opt_g), (eager.opt_d, graphed.opt_d)):
        for pe, pg in zip(opt_e.state.values(), opt_g.state.values(), strict=True):
            assert all(torch.equal(pe[k], pg[k]) for k in pe)


def test_training_state_restore_writes_into_the_same_tensors():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    opt = torch.optim.Adam(model.parameters(), 0.1)
    state = TrainingState([model], [opt])
    weight, stats = model[0].weight, model[1].running_mean
    before = weight.detach().clone()
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    moments = [s["exp_avg"] for s in opt.state.values()]
    assert not torch.equal(weight, before) and stats.abs().sum() > 0
    state.restore()
    assert model[0].weight is weight and torch.equal(weight, before) and stats.abs().sum() == 0
    assert all(m.abs().sum() == 0 for m in moments) and all(int(s["step"]) == 0 for s in opt.state.values())


def test_lr_schedule_halves_after_each_period():
    trainer = Trainer(_cfg(epochs=3, lr_decay_every=1, lr=1e-3), _data())
    rows = [trainer.run_epoch(e) for e in (1, 2, 3)]
    assert [r["lr"] for r in rows] == pytest.approx([1e-3, 5e-4, 2.5e-4])
    assert lr_at(trainer.cfg, 3) == pytest.approx(2.5e-4)


@pytest.mark.parametrize("swap_weight", [0.0, 10.0])
def test_resume_is_bit_identical_to_uninterrupted_training(tmp_path, swap_weight):
    # With colour swaps, the second epoch trains on the second edit set, also after a resume.
    cfg = _cfg(epochs=2, swap_weight=swap_weight)
    straight = Trainer(cfg, _swap_data(), seed=1)
    fit(straight, tmp_path / "a.pt")

    first = Trainer(GANConfig.from_dict(cfg.to_dict() | {"epochs": 1}), _swap_data(), seed=1)
    fit(first, tmp_path / "b.pt")
    resumed = Trainer(cfg, _swap_data(), seed=1)
    assert resumed.try_resume(tmp_path / "b.pt", log=lambda m: None)
    assert resumed.epoch == 1
    fit(resumed, tmp_path / "b.pt")
    s1, s2 = _state(straight), _state(resumed)
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert [r["d_loss"] for r in straight.history] == [r["d_loss"] for r in resumed.history]


def test_mid_epoch_interrupt_resumes_exactly(tmp_path):
    cfg = _cfg(epochs=1)
    straight = Trainer(cfg, _data(), seed=2)
    straight.run_epoch(1)

    interrupted = Trainer(cfg, _data(), seed=2)
    calls = {"n": 0}

    def stop_after_one_step() -> bool:
        calls["n"] += 1
        return calls["n"] >= 1

    assert interrupted.run_epoch(1, stop_after_one_step) is None
    assert interrupted.batch == 1
    interrupted.save(tmp_path / "c.pt")
    resumed = Trainer(cfg, _data(), seed=2)
    assert resumed.try_resume(tmp_path / "c.pt", log=lambda m: None) and resumed.batch == 1
    resumed.run_epoch(1)
    s1, s2 = _state(straight), _state(resumed)
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_changed_settings_start_from_scratch(tmp_path):
    trainer = Trainer(_cfg(epochs=1), _data())
    fit(trainer, tmp_path / "x.pt")
    messages = []
    other = Trainer(_cfg(epochs=1, lr=1e-3), _data())
    assert not other.try_resume(tmp_path / "x.pt", log=messages.append)
    assert "lr" in messages[0] and other.epoch == 0
    changed_data = _data(seed=1)
    again = Trainer(_cfg(epochs=1), changed_data)
    assert not again.try_resume(tmp_path / "x.pt", log=messages.append)
    assert "training data" in messages[-1]


def test_non_finite_loss_names_epoch_and_step_and_keeps_the_checkpoint(tmp_path):
    data = _data()
    trainer = Trainer(_cfg(epochs=2), data)
    fit(trainer, tmp_path / "n.pt")  # two good epochs written
    good = checkpoint.load(tmp_path / "n.pt")
    broken = Trainer(_cfg(epochs=3), data)
    assert broken.try_resume(tmp_path / "n.pt", log=lambda m: None)
    broken.features[:] = float("nan")
    with pytest.raises(NonFiniteLoss, match=r"at epoch 3, step 1; training stopped"):
        fit(broken, tmp_path / "n.pt")
    kept = checkpoint.load(tmp_path / "n.pt")
    assert kept["epoch"] == good["epoch"] == 2
    assert all(torch.equal(kept["generator"][k], good["generator"][k]) for k in good["generator"])


def test_sample_grid_shape():
    trainer = Trainer(_cfg(), _data())
    grid = trainer.sample_grid()
    assert grid.shape == (2, 3, 16, 16, 3) and grid.dtype == np.uint8


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"batch_size": 0}, "gan.batch_size"),
        ({"image_size": 40}, "multiple of 16"),
        ({"lr": -1e-4}, "gan.lr"),
        ({"encoder": "resnet"}, r"gan.encoder = 'resnet'; choose one of \['conv', 'vgg16bn'\]"),
        ({"width": 0}, "gan.width"),
        ({"batchsize": 8}, r"unknown key\(s\) \['batchsize'\] in section 'gan'"),
        ({"swap_weight": -1}, "gan.swap_weight"),
        ({"swap_variants": 0}, "gan.swap_variants"),
    ],
)
def test_bad_params_are_clear_errors(values, match):
    with pytest.raises(ConfigError, match=match):
        GANConfig.from_dict(values)


def test_crop_larger_than_stored_images_is_a_clear_error():
    with pytest.raises(ConfigError, match="gan.image_size = 32 is larger than the stored images"):
        Trainer(_cfg(image_size=32), _data(size=20))


# Section: several processes.


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    """Parameters identical across ranks after every step, disjoint data per rank, and losses that
    track a one-process run of the same global batch."""
    import ddp_worker
    import torch.multiprocessing as mp

    data = _data(n=32)
    cfg = _cfg(batch_size=8, epochs=1)
    out = tmp_path / "ranks.pt"
    mp.spawn(ddp_worker.run, args=(2, str(tmp_path / "pg"), str(out), cfg.to_dict(), data), nprocs=2)
    ranks = torch.load(out, weights_only=False)
    assert len(ranks[0]["sums"]) == len(ranks[1]["sums"]) == 4  # 32 images = 4 steps of 2 ranks x 4 images
    np.testing.assert_array_equal(ranks[0]["sums"], ranks[1]["sums"])
    seen0 = {i for batch in ranks[0]["seen"] for i in batch}
    seen1 = {i for batch in ranks[1]["seen"] for i in batch}
    assert not seen0 & seen1 and len(seen0 | seen1) == 32

    single = Trainer(cfg, data, seed=5)
    single_losses = [float(single.train_step(real, idx)["d_loss"]) for _, idx, real in single.batches(0)]
    ddp_losses = np.mean([ranks[0]["losses"], ranks[1]["losses"]], axis=0)
    np.testing.assert_allclose(ddp_losses, single_losses[: len(ddp_losses)], rtol=0.15)


# Section: improvements behind params.


def test_mask_output_starts_near_the_identity_and_learns():
    g = Generator(16, 10, 0.125, output="mask").eval()
    x = torch.rand(2, 3, 16, 16) * 1.8 - 0.9
    out, _, _ = g(x, torch.randn(2, 10), torch.randn(2, g.cond_dim))
    assert (out - x).abs().max() < 0.1  # the mask starts at sigmoid(-3): 5% repaint at most
    trainer = Trainer(_cfg(output="mask"), _data())
    before = trainer.g.to_rgb.weight.clone()
    _, idx, real = next(trainer.batches(0))
    trainer.train_step(real, idx)
    assert not torch.equal(before, trainer.g.to_rgb.weight), "the output layer learns"


def test_mask_output_blends_source_and_repaint():
    g = Generator(16, 10, 0.125, output="mask").eval()
    with torch.no_grad():
        g.to_rgb.bias[3] = 30.0  # mask fully open: the output is the repaint layer alone
        x = torch.rand(2, 3, 16, 16) * 2 - 1
        out, _, _ = g(x, torch.randn(2, 10), torch.zeros(2, g.cond_dim))
        g.to_rgb.bias[3] = -30.0  # mask closed: the output is the source
        kept, _, _ = g(x, torch.randn(2, 10), torch.zeros(2, g.cond_dim))
    torch.testing.assert_close(kept, x)
    assert (out - x).abs().mean() > 0.1


@pytest.mark.parametrize("removed", ["residual", "layers", "regions", "blend"])
def test_unknown_output_mode_is_a_clear_error(removed):
    with pytest.raises(ConfigError, match="gan.output"):
        _cfg(output=removed)
    with pytest.raises(ConfigError, match=f"gan.output = '{removed}' is unknown"):
        Generator(16, 10, 0.125, output=removed)


@pytest.mark.parametrize(
    "key", ["vse_weight", "cycle_weight", "recolour", "share_fake", "cudnn_benchmark", "region_weight"]
)
def test_removed_options_are_unknown_keys(key):
    with pytest.raises(ConfigError, match=rf"unknown key\(s\) \['{key}'\] in section 'gan'"):
        _cfg(**{key: 1})


# Section: colour-swap pairs (gan.swap_weight).


def test_swap_term_is_l2_of_the_mismatching_half_towards_its_targets():
    torch.manual_seed(0)
    d = Discriminator(16, 10, 0.125)
    real, fake = torch.rand(4, 3, 16, 16) * 2 - 1, torch.rand(4, 3, 16, 16) * 2 - 1
    text, target, swap_text = torch.randn(4, 10), torch.rand(2, 3, 16, 16) * 2 - 1, torch.randn(2, 10)
    plain_batch = Batch(real, text, torch.zeros(4, 5))
    batch = Batch(real, text, torch.zeros(4, 5), swap_target=target, swap_text=swap_text)
    loss = _loss(fake, d, swap=3.0)
    gen = loss.generate(batch)
    # The mismatching half's text is the swapped caption; the matching half keeps its own.
    torch.testing.assert_close(gen.relevant, torch.cat([swap_text, text[2:]]))
    d.eval()
    plain_gen = loss.generate(plain_batch)
    plain_gen.relevant = gen.relevant  # the same critic scores, so only the swap term differs
    plain, _ = loss.g_phase(plain_batch, plain_gen)
    total, stats = loss.g_phase(batch, gen)
    expected = (fake[:2] - target).pow(2).mean()
    assert float(stats["swap"]) == pytest.approx(float(expected))
    assert (total - plain).item() == pytest.approx(3.0 * expected.item(), rel=1e-5)


def test_swap_training_pairs_each_epoch_with_the_next_edit_set():
    data = _swap_data(variants=2)
    trainer = Trainer(_cfg(flip=False, swap_weight=10.0), data)
    for epoch in (0, 1, 2):
        _, idx, both = next(trainer.batches(epoch))
        assert both.shape == (8, 6, 16, 16)
        k = epoch % 2
        # Source and edit share the random crop: each channel group is a crop of its own array at one offset.
        src = torch.from_numpy(data.images[idx.numpy()]).permute(0, 3, 1, 2).float() / 127.5 - 1
        edit = torch.from_numpy(data.swap_images[k, idx.numpy()]).permute(0, 3, 1, 2).float() / 127.5 - 1
        for row in range(len(idx)):
            hits = [
                (oy, ox)
                for oy in range(5)
                for ox in range(5)
                if torch.equal(src[row, :, oy : oy + 16, ox : ox + 16], both[row, :3])
                and torch.equal(edit[row, :, oy : oy + 16, ox : ox + 16], both[row, 3:])
            ]
            assert hits, "source and edit were cropped differently"
    stats = trainer.train_step(both, idx)
    assert torch.isfinite(stats["swap"]) and float(stats["swap"]) > 0


def test_swap_training_learns_the_targets_and_needs_the_pairs():
    data = _swap_data(variants=1)
    trainer = Trainer(_cfg(swap_weight=100.0, output="mask", flip=False, lr=1e-3), data)
    _, idx, both = next(trainer.batches(0))
    first = float(trainer.train_step(both, idx)["swap"])
    for _ in range(20):
        last = float(trainer.train_step(both, idx)["swap"])
    assert last < 0.8 * first
    with pytest.raises(ConfigError, match="gan.swap_weight > 0 needs the colour-swap pairs"):
        Trainer(_cfg(swap_weight=1.0), _data())


def test_other_swap_pairs_are_other_training_data(tmp_path):
    cfg = _cfg(epochs=1, swap_weight=10.0)
    fit(Trainer(cfg, _swap_data(), seed=1), tmp_path / "b.pt")
    assert Trainer(cfg, _swap_data(), seed=1).try_resume(tmp_path / "b.pt", log=lambda m: None)
    other = _swap_data()
    other.swap_images = other.swap_images[::-1].copy()
    assert not Trainer(cfg, other, seed=1).try_resume(tmp_path / "b.pt", log=lambda m: None)
