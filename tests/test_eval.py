"""Evaluation: pixel metrics, pairs, ground-truth metrics, MP, the registry and the primary metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sisgan.config import EvalConfig, SynthConfig, TextConfig
from sisgan.data.shards import load_split
from sisgan.errors import ConfigError
from sisgan.eval import image_metrics as im
from sisgan.eval.evaluate import (
    METRICS,
    build_context,
    evaluate_rows,
    ground_truth,
    make_pairs,
    manipulative_precision,
    primary_metric,
    run_generator,
)
from sisgan.eval.grids import caption_rows
from sisgan.models import Generator
from sisgan.text.model import TextModel
from sisgan.text.tokenizer import Vocabulary


def test_pixel_metrics():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    assert (im.psnr(a, a) == im.PSNR_CAP).all()
    assert np.allclose(im.ssim(a, a), 1.0) and (im.l1(a, a) == 0).all()
    b = np.clip(a.astype(int) + 16, 0, 255).astype(np.uint8)
    assert (im.psnr(a, b) < 30).all() and (im.ssim(a, b) < 1).all()
    assert im.l1(np.zeros((1, 4, 4, 3), np.uint8), np.full((1, 4, 4, 3), 255, np.uint8))[0] == 1.0
    mask = np.zeros((3, 16, 16), bool)
    mask[:, :8] = True
    c = a.copy()
    c[:, 8:] = 0  # differences only outside the mask
    assert (im.psnr(a, c, mask) == im.PSNR_CAP).all() and (im.psnr(a, c) < im.PSNR_CAP).all()


@pytest.fixture(scope="module")
def synth_test(tmp_path_factory):
    from conftest import synth_shards

    cfg = SynthConfig(n_images=60, n_classes=12, test_classes=4, captions_per_image=3)
    out = tmp_path_factory.mktemp("eval")
    synth_shards(out, cfg, load_size=74)
    return load_split(out, "test")


@pytest.fixture(scope="module")
def tiny_text_model(synth_test):
    torch.manual_seed(0)
    vocab = Vocabulary.build([c for caps in synth_test.captions for c in caps])
    cfg = TextConfig(embed_dim=16, hidden_dim=16, cnn_width=8, image_size=64)
    return TextModel.create(cfg, vocab).eval()


def test_pairs_target_other_images(synth_test):
    src, tgt, cap = make_pairs(synth_test, EvalConfig(pairs_per_image=3), seed=0)
    assert len(src) == 3 * len(synth_test) and (src != tgt).all()
    assert all(0 <= c < len(synth_test.captions[t]) for t, c in zip(tgt, cap, strict=True))
    s2, t2, c2 = make_pairs(synth_test, EvalConfig(pairs_per_image=3), seed=0)
    assert (tgt == t2).all() and (cap == c2).all()
    with pytest.raises(ConfigError, match="at least 2 test images"):
        make_pairs(synth_test, EvalConfig(max_images=1), seed=0)


def test_reference_rows_bracket_the_scale(synth_test, tiny_text_model):
    ctx = build_context(synth_test, tiny_text_model, EvalConfig(), 64, seed=0, device=torch.device("cpu"))
    results = evaluate_rows(ctx, ctx.sources, ("counterfactual", "manipulative_precision"))
    cf, ident = results["counterfactual"]["counterfactual"], results["identity"]["counterfactual"]
    assert cf["attribute_accuracy"] == cf["keep_accuracy"] == cf["edit_score"] == 1.0
    assert cf["cf_psnr"] == im.PSNR_CAP and cf["cf_l1"] == 0.0
    assert ident["keep_accuracy"] == 1.0 and ident["background_psnr"] == im.PSNR_CAP
    # Identity only gets a named attribute right when the target happens to share the source's colour.
    assert ident["attribute_accuracy"] < 0.5
    assert ident["cf_psnr"] < im.PSNR_CAP
    # The counterfactual changes the bird and nothing else: its background equals the source's.
    assert cf["background_psnr"] == im.PSNR_CAP
    assert results["model"]["counterfactual"]["edit_score"] == ident["edit_score"]  # model = sources here


def test_attribute_accuracy_reads_the_named_part_colours(synth_test, tiny_text_model):
    """A fake model that paints the counterfactual's bird but keeps the source background scores 1."""
    ctx = build_context(synth_test, tiny_text_model, EvalConfig(), 64, seed=1, device=torch.device("cpu"))
    gt = ground_truth(ctx)
    wrong = gt["counterfactual"].copy()
    wrong[gt["core"][:, 0]] = 255 - wrong[gt["core"][:, 0]]  # scramble every body colour
    res = METRICS["counterfactual"](ctx, wrong)
    assert res["edit_score"] < 1.0
    # Keep is also scored per part: only the body, scrambled where the caption leaves it unnamed, loses it.
    assert res["keep_accuracy_body"] < 1.0
    assert res["keep_accuracy_wing"] == res["keep_accuracy_head"] == res["keep_accuracy_beak"] == 1.0
    assert METRICS["counterfactual"](ctx, gt["counterfactual"])["edit_score"] == 1.0


def test_manipulative_precision_formula(synth_test, tiny_text_model):
    ctx = build_context(
        synth_test, tiny_text_model, EvalConfig(max_images=6), 64, seed=0, device=torch.device("cpu")
    )
    same = manipulative_precision(ctx, ctx.sources)
    assert same["mp_diff"] == 0.0 and same["mp"] == pytest.approx(same["mp_similarity"])
    black = np.zeros_like(ctx.sources)
    res = manipulative_precision(ctx, black)
    assert res["mp"] == pytest.approx((1 - res["mp_diff"]) * res["mp_similarity"], abs=0.05)
    assert 0 < res["mp_diff"] <= 1


def test_fid_is_skipped_with_a_reason(synth_test, tiny_text_model, tmp_path):
    ctx = build_context(
        synth_test, tiny_text_model, EvalConfig(max_images=4), 64, seed=0, device=torch.device("cpu")
    )
    assert "no Inception weights" in METRICS["fid"](ctx, ctx.sources)["skipped"]
    ctx.inception_weights = str(tmp_path / "absent.pth")
    assert "not found" in METRICS["fid"](ctx, ctx.sources)["skipped"]


def test_generator_outputs_and_grid(synth_test, tiny_text_model, tmp_path):
    torch.manual_seed(0)
    g = Generator(64, 16, 0.125)
    ctx = build_context(
        synth_test, tiny_text_model, EvalConfig(max_images=5), 64, seed=0, device=torch.device("cpu")
    )
    out = run_generator(ctx, g, batch_size=3)
    assert out.shape == ctx.sources.shape and out.dtype == np.uint8
    grid = caption_rows(ctx.sources[:3], ctx.captions[:3], out[:3], out[:3])
    assert grid.size[1] > 3 * 96 and grid.size[0] > 6 * 96


def test_primary_metric_choice_and_unknown_metric(synth_test, tiny_text_model):
    assert (
        primary_metric("synth-birds", {"model": {"counterfactual": {"edit_score": 0.4}}})["name"]
        == "edit_score"
    )
    mp = {"model": {"counterfactual": {"skipped": "x"}, "manipulative_precision": {"mp": 0.2}}}
    assert primary_metric("cub", mp) == {"name": "mp", "value": 0.2, "higher_is_better": True}
    ctx = build_context(
        synth_test, tiny_text_model, EvalConfig(max_images=3), 64, seed=0, device=torch.device("cpu")
    )
    with pytest.raises(ConfigError, match="evaluate.metrics has unknown"):
        evaluate_rows(ctx, ctx.sources, ("inception_score",))


def test_new_metrics_leave_the_earlier_figures_as_they_were(synth_test, tiny_text_model):
    """The real-data metrics and rows are added beside the synth-birds ones: the pairs, and every number
    the counterfactual and MP groups gave before, are the same with them."""
    torch.manual_seed(0)
    outputs = run_generator(
        build_context(synth_test, tiny_text_model, EvalConfig(), 64, 0, torch.device("cpu")),
        Generator(64, 16, 0.125).eval(),
    )
    before = ("counterfactual", "manipulative_precision")
    ctx_a = build_context(synth_test, tiny_text_model, EvalConfig(), 64, 0, torch.device("cpu"))
    ctx_b = build_context(synth_test, tiny_text_model, EvalConfig(), 64, 0, torch.device("cpu"))
    old = evaluate_rows(ctx_a, outputs, before)
    new = evaluate_rows(ctx_b, outputs, tuple(m for m in EvalConfig().metrics if m != "retrieval"))
    assert ctx_b.captions == [
        synth_test.captions[t][c] for t, c in zip(*make_pairs(synth_test, EvalConfig(), 0)[1:], strict=True)
    ]
    for row in ("model", "identity", "counterfactual"):
        assert {g: new[row][g] for g in before} == old[row], row
    assert set(new) == {"model", "identity", "counterfactual", "real", "tint"}
    # The exact edit shows the named colours more than the unedited source does.
    assert (
        new["counterfactual"]["colour_following"]["colour_agreement"]
        >= new["identity"]["colour_following"]["colour_agreement"]
    )
