"""Evaluation of manipulation on the test split: pairs, outputs, and a registry of metrics.

Each source image of the test split (unseen classes) is paired with captions of *other* test images.
Every metric is `fn(ctx, outputs) -> dict` and is computed for the model's outputs and, where it makes
sense, for two reference rows: `identity` (output = source) and `counterfactual` (the exact intended
edit, synth-birds only).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sisgan.config import EvalConfig
from sisgan.data import synth
from sisgan.data.images import center_crop
from sisgan.data.shards import SplitData
from sisgan.errors import ConfigError, DataError
from sisgan.eval import image_metrics as im
from sisgan.models.generator import edit_images, text_inputs
from sisgan.pixels import to_unit


@dataclasses.dataclass
class EvalContext:
    """Pairs (source k, target caption k). Images are centre crops at the model's size, uint8 [P, S, S, 3]."""

    sources: np.ndarray
    source_index: np.ndarray  # [P] row of the test split
    captions: list[str]
    target_attrs: list[dict[str, str]] | None  # synth-birds: the attributes each caption names
    split: SplitData
    load_size: int
    image_size: int
    text_model: Any  # sisgan.text.model.TextModel
    device: torch.device
    inception_weights: str | None = None
    _cache: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        return self.target_attrs is not None and self.split.scenes is not None

    def crop(self, images: np.ndarray) -> np.ndarray:
        return center_crop(images, self.image_size)


def make_pairs(split: SplitData, cfg: EvalConfig, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source rows [P], target rows [P], caption index [P]); targets are always other images."""
    n = len(split) if not cfg.max_images else min(cfg.max_images, len(split))
    if n < 2:
        raise ConfigError("evaluation needs at least 2 test images; raise evaluate.max_images or add data.")
    rng = np.random.default_rng(seed)
    src = np.repeat(np.arange(n), cfg.pairs_per_image)
    tgt = (src + rng.integers(1, n, len(src))) % n
    caps = np.array([rng.integers(0, len(split.captions[t])) for t in tgt])
    return src, tgt, caps


def build_context(
    split: SplitData, text_model: Any, cfg: EvalConfig, image_size: int, seed: int, device: torch.device
) -> EvalContext:
    src, tgt, cap = make_pairs(split, cfg, seed)
    captions = [split.captions[t][c] for t, c in zip(tgt, cap, strict=True)]
    attrs = None
    if split.caption_attrs is not None:
        attrs = [
            {p: v for p, v in split.caption_attrs[t][c].items() if v is not None}
            for t, c in zip(tgt, cap, strict=True)
        ]
    ctx = EvalContext(
        sources=np.empty(0),
        source_index=src,
        captions=captions,
        target_attrs=attrs,
        split=split,
        load_size=split.images.shape[1],
        image_size=image_size,
        text_model=text_model,
        device=device,
        inception_weights=cfg.inception_weights,
    )
    ctx.sources = ctx.crop(split.images[src])
    return ctx


@torch.no_grad()
def run_generator(ctx: EvalContext, generator: torch.nn.Module, batch_size: int = 128) -> np.ndarray:
    """The model's outputs for every pair: uint8 [P, S, S, 3] (eval mode, ε = 0)."""
    generator.eval()
    texts = text_inputs(generator, ctx.text_model, ctx.captions)
    return edit_images(generator, ctx.sources, *texts, batch_size=batch_size)


# Section: synth-birds ground truth.


def ground_truth(ctx: EvalContext) -> dict[str, np.ndarray]:
    """Counterfactual images, per-part core masks and background masks for every pair (cached)."""
    if "gt" in ctx._cache:
        return ctx._cache["gt"]
    cfs, cores, bgs = [], [], []
    per_source: dict[int, tuple[dict[str, np.ndarray], np.ndarray]] = {}
    for k, s in enumerate(ctx.source_index):
        scene = synth.Scene.from_record(ctx.split.scenes[s])
        if s not in per_source:
            _, touched = synth.render(scene, ctx.load_size)
            bird = np.any([touched[p] for p in synth.PARTS], axis=0)
            per_source[s] = (synth.core_masks(scene, ctx.load_size), ~bird)
        core, bg = per_source[s]
        cfs.append(synth.render_counterfactual(scene, ctx.target_attrs[k], ctx.load_size))
        cores.append(np.stack([core[p] for p in synth.PARTS]))
        bgs.append(bg)
    gt = {
        "counterfactual": ctx.crop(np.stack(cfs)),
        "core": center_crop(np.stack(cores), ctx.image_size, channels_last=False),  # [P, 4 parts, S, S]
        "background": center_crop(np.stack(bgs), ctx.image_size, channels_last=False),
    }
    ctx._cache["gt"] = gt
    return gt


def _part_accuracy(ctx: EvalContext, outputs: np.ndarray, core: np.ndarray) -> dict[str, Any]:
    """Attribute accuracy on named parts (overall and per part) and keep accuracy on unnamed ones.

    A part's colour is the nearest palette colour to its mean over the part's core pixels.
    """
    named = {p: [0, 0] for p in synth.PARTS}  # part -> [hits, count]
    kept = [0, 0]
    for k in range(len(outputs)):
        scene = ctx.split.scenes[ctx.source_index[k]]
        for j, part in enumerate(synth.PARTS):
            mask = core[k, j]
            if not mask.any():
                continue  # too small to have a whole pixel at this size
            colour = synth.nearest_colour(outputs[k][mask].mean(axis=0))
            if part in ctx.target_attrs[k]:
                named[part][0] += colour == ctx.target_attrs[k][part]
                named[part][1] += 1
            else:
                kept[0] += colour == scene[part]
                kept[1] += 1
    hits, count = sum(h for h, _ in named.values()), sum(n for _, n in named.values())
    return {
        "attribute_accuracy": hits / max(count, 1),
        "keep_accuracy": kept[0] / max(kept[1], 1),
        **{f"attribute_accuracy_{p}": h / max(n, 1) for p, (h, n) in named.items()},
        "named_parts": count,
        "kept_parts": kept[1],
    }


def counterfactual_metrics(ctx: EvalContext, outputs: np.ndarray) -> dict[str, Any]:
    if not ctx.synthetic:
        return {"skipped": "needs ground truth (synth-birds only)"}
    gt = ground_truth(ctx)
    parts = _part_accuracy(ctx, outputs, gt["core"])
    cf = gt["counterfactual"]
    return {
        "attribute_accuracy": parts["attribute_accuracy"],
        "keep_accuracy": parts["keep_accuracy"],
        "edit_score": parts["attribute_accuracy"] * parts["keep_accuracy"],
        "background_psnr": float(im.psnr(outputs, ctx.sources, gt["background"]).mean()),
        "cf_psnr": float(im.psnr(outputs, cf).mean()),
        "cf_ssim": float(im.ssim(outputs, cf).mean()),
        "cf_l1": float(im.l1(outputs, cf).mean()),
        **{k: v for k, v in parts.items() if k not in ("attribute_accuracy", "keep_accuracy")},
    }


# Section: metrics for every dataset.


@torch.no_grad()
def manipulative_precision(ctx: EvalContext, outputs: np.ndarray) -> dict[str, Any]:
    """MP = (1 - mean|out - src|) x cos(φ_img(out), φ(t_target)), with the project's VSE encoders."""
    tm = ctx.text_model
    phi_t = tm.encode_texts(ctx.captions).float()
    x = to_unit(outputs)
    size = tm.config.image_size
    if x.shape[-1] != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    phi_i = tm.encode_images(x).float()
    cos = F.cosine_similarity(phi_i, phi_t.to(phi_i.device), dim=1).cpu().numpy()
    diff = im.l1(outputs, ctx.sources)
    mp = (1 - diff) * cos
    return {"mp": float(mp.mean()), "mp_similarity": float(cos.mean()), "mp_diff": float(diff.mean())}


@torch.no_grad()
def retrieval(ctx: EvalContext, outputs: np.ndarray) -> dict[str, Any]:
    """VSE recall@1/5/10 on the test split (a property of the text encoder: same for every row)."""
    if "retrieval" not in ctx._cache:
        from sisgan.train.vse import evaluate_retrieval

        ctx._cache["retrieval"] = evaluate_retrieval(
            ctx.text_model, ctx.split, ctx.text_model.config.image_size
        )
    return dict(ctx._cache["retrieval"])


def fid(ctx: EvalContext, outputs: np.ndarray) -> dict[str, Any]:
    """Fréchet Inception distance of outputs vs the test images, when Inception weights are local."""
    from pathlib import Path

    if not ctx.inception_weights:
        return {
            "skipped": "no Inception weights (set evaluate.inception_weights to a local inception_v3 file)"
        }
    if not Path(ctx.inception_weights).is_file():
        return {"skipped": f"evaluate.inception_weights: {ctx.inception_weights} not found"}
    if "fid_real" not in ctx._cache:
        ctx._cache["fid_real"] = _inception_stats(ctx, ctx.crop(ctx.split.images))
    mu_r, cov_r = ctx._cache["fid_real"]
    mu_f, cov_f = _inception_stats(ctx, outputs)
    return {"fid": _frechet(mu_r, cov_r, mu_f, cov_f)}


@torch.no_grad()
def _inception_stats(ctx: EvalContext, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from torchvision.models import inception_v3

    if "inception" not in ctx._cache:
        net = inception_v3(weights=None, aux_logits=True, init_weights=False)
        from sisgan.train.checkpoint import load_weights

        remedy = "set evaluate.inception_weights to a torchvision inception_v3 ImageNet state_dict"
        state = load_weights(ctx.inception_weights, remedy, what="evaluate.inception_weights")
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError):
            raise DataError(
                f"evaluate.inception_weights {ctx.inception_weights} does not fit inception_v3; {remedy}."
            ) from None
        net.fc = torch.nn.Identity()
        ctx._cache["inception"] = net.eval().to(ctx.device)
    net = ctx._cache["inception"]
    mean = torch.tensor([0.485, 0.456, 0.406], device=ctx.device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=ctx.device).view(1, 3, 1, 1)
    feats = []
    for i in range(0, len(images), 64):
        x = (
            torch.from_numpy(np.ascontiguousarray(images[i : i + 64]))
            .to(ctx.device)
            .permute(0, 3, 1, 2)
            .float()
            / 255
        )
        x = F.interpolate(x, size=299, mode="bilinear", align_corners=False)
        feats.append(net((x - mean) / std).double().cpu().numpy())
    f = np.concatenate(feats)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _frechet(mu1: np.ndarray, c1: np.ndarray, mu2: np.ndarray, c2: np.ndarray) -> float:
    from scipy import linalg

    covmean, _ = linalg.sqrtm(c1 @ c2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean))


MetricFn = Callable[[EvalContext, np.ndarray], dict[str, Any]]
METRICS: dict[str, MetricFn] = {
    "counterfactual": counterfactual_metrics,
    "manipulative_precision": manipulative_precision,
    "retrieval": retrieval,
    "fid": fid,
}
# Metrics that say nothing new for the reference rows.
MODEL_ONLY = {"retrieval", "fid"}


def check_metrics(names: tuple[str, ...]) -> None:
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ConfigError(
            f"params.yaml: evaluate.metrics has unknown {unknown}; choose from {list(METRICS)}."
        )


def evaluate_rows(
    ctx: EvalContext, model_outputs: np.ndarray, names: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """{row: {metric group: values}} for the model and the reference rows."""
    check_metrics(names)
    rows: dict[str, np.ndarray] = {"model": model_outputs, "identity": ctx.sources}
    if ctx.synthetic:
        rows["counterfactual"] = ground_truth(ctx)["counterfactual"]
    out: dict[str, dict[str, Any]] = {}
    for row, images in rows.items():
        out[row] = {n: METRICS[n](ctx, images) for n in names if row == "model" or n not in MODEL_ONLY}
    return out


def primary_metric(dataset: str, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The number the registry compares models by: edit_score on synth-birds (needs ground truth), else MP."""
    model = results["model"]
    if "counterfactual" in model and "edit_score" in model["counterfactual"]:
        value = model["counterfactual"]["edit_score"]
        name = "edit_score"
    elif "manipulative_precision" in model:
        value, name = model["manipulative_precision"]["mp"], "mp"
    else:
        raise ConfigError(
            "evaluate.metrics must include manipulative_precision (or counterfactual on synth-birds)."
        )
    if not math.isfinite(value):
        value = float("-inf")
    return {"name": name, "value": float(value), "higher_is_better": True}
