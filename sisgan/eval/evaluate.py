"""Evaluation of manipulation on the test split: pairs, outputs, and a registry of metrics.

Each source image of the test split (unseen classes) is paired with captions of *other* test images.
Every metric is `fn(ctx, outputs) -> dict` and is computed for the model's outputs and, where it makes
sense (`ROWS`), for reference rows: `identity` (output = source), `counterfactual` (the exact intended
edit, synth-birds only), `real` (the source with one of its own captions: a real image-caption pair) and
`tint` (the source globally tinted toward the colour the target caption names: an edit that fools pixel and
colour measures without following the text) and, on photos, `described` (the photo the target caption was
written for: what the measures give a real flower of the caption). docs/evaluation.md defines each metric.
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
from sisgan.eval import colour as col
from sisgan.eval import image_metrics as im
from sisgan.models.generator import edit_images, text_inputs
from sisgan.pixels import to_unit

DISTRACTORS = 99  # R-precision's mismatched captions per pair (AttnGAN: 1 true caption among 100)


@dataclasses.dataclass
class EvalContext:
    """Pairs (source k, target caption k). Images are centre crops at the model's size, uint8 [P, S, S, 3].

    A metric reads the captions of its row from `captions`: the target captions, or for the `real` row
    (`row_view("real")`) each source's own caption. Views share one cache.
    """

    sources: np.ndarray
    source_index: np.ndarray  # [P] row of the test split
    target_index: np.ndarray  # [P] the row whose caption is the pair's target caption
    captions: list[str]
    target_attrs: list[dict[str, str]] | None  # synth-birds: the attributes each caption names
    split: SplitData
    load_size: int
    image_size: int
    text_model: Any  # sisgan.text.model.TextModel
    device: torch.device
    inception_weights: str | None = None
    own_captions: list[str] = dataclasses.field(default_factory=list)  # [P] a caption of the source itself
    own_attrs: list[dict[str, str]] | None = None
    # R-precision: per pair, DISTRACTORS captions of test images other than its source and target, as
    # indices into the flattened test captions (`caption_pool`).
    distractors: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 0), np.int64))
    tint_strength: float = 0.5
    colour_min_rise: float = 0.05
    row: str = "model"
    _cache: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        return self.target_attrs is not None and self.split.scenes is not None

    def crop(self, images: np.ndarray) -> np.ndarray:
        return center_crop(images, self.image_size)

    def row_view(self, row: str) -> EvalContext:
        """The context a row's metrics read: the `real` row pairs each source with its own caption."""
        if row != "real":
            return dataclasses.replace(self, row=row, _cache=self._cache)
        return dataclasses.replace(
            self, captions=self.own_captions, target_attrs=self.own_attrs, row=row, _cache=self._cache
        )


def caption_pool(split: SplitData) -> tuple[list[str], np.ndarray]:
    """Every caption of the split, flattened, and the row each belongs to [M]."""
    texts = [c for caps in split.captions for c in caps]
    owner = np.repeat(np.arange(len(split)), [len(caps) for caps in split.captions])
    return texts, owner


def draw_distractors(
    owner: np.ndarray, src: np.ndarray, tgt: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """[P, k'] caption indices per pair, none of its source's or target's image (k' = k, or fewer where the
    split has fewer such captions: none with two test images), drawn without replacement."""
    available = min(int(((owner != s) & (owner != t)).sum()) for s, t in zip(src, tgt, strict=True))
    k = min(k, available)
    if k < 1:
        return np.zeros((len(src), 0), np.int64)
    rows = [
        rng.choice(np.flatnonzero((owner != s) & (owner != t)), k, replace=False)
        for s, t in zip(src, tgt, strict=True)
    ]
    return np.stack(rows).astype(np.int64)


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
    # The reference rows' draws have generators of their own: the pairs stay what they were without them.
    own_rng = np.random.default_rng([seed, 1])
    own = np.array([own_rng.integers(len(split.captions[s])) for s in src])
    own_attrs = None
    if split.caption_attrs is not None:
        own_attrs = [
            {p: v for p, v in split.caption_attrs[s][c].items() if v is not None}
            for s, c in zip(src, own, strict=True)
        ]
    _, owner = caption_pool(split)
    ctx = EvalContext(
        sources=np.empty(0),
        source_index=src,
        target_index=tgt,
        captions=captions,
        target_attrs=attrs,
        split=split,
        load_size=split.images.shape[1],
        image_size=image_size,
        text_model=text_model,
        device=device,
        inception_weights=cfg.inception_weights,
        own_captions=[split.captions[s][c] for s, c in zip(src, own, strict=True)],
        own_attrs=own_attrs,
        distractors=draw_distractors(owner, src, tgt, DISTRACTORS, np.random.default_rng([seed, 2])),
        tint_strength=cfg.tint_strength,
        colour_min_rise=cfg.colour_min_rise,
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
    """Attribute accuracy on named parts and keep accuracy on unnamed ones, overall and per part.

    A part's colour is the nearest palette colour to its mean over the part's core pixels.
    """
    named = {p: [0, 0] for p in synth.PARTS}  # part -> [hits, count]
    unnamed = {p: [0, 0] for p in synth.PARTS}  # part -> [kept, count]
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
                unnamed[part][0] += colour == scene[part]
                unnamed[part][1] += 1
    hits, count = sum(h for h, _ in named.values()), sum(n for _, n in named.values())
    kept, unnamed_count = sum(h for h, _ in unnamed.values()), sum(n for _, n in unnamed.values())
    return {
        "attribute_accuracy": hits / max(count, 1),
        "keep_accuracy": kept / max(unnamed_count, 1),
        **{f"attribute_accuracy_{p}": h / max(n, 1) for p, (h, n) in named.items()},
        **{f"keep_accuracy_{p}": h / max(n, 1) for p, (h, n) in unnamed.items()},
        "named_parts": count,
        "kept_parts": unnamed_count,
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


# Section: text-following, colour-following and keep (every dataset; docs/evaluation.md).


def _cached(ctx: EvalContext, key: str, make: Callable[[], Any]) -> Any:
    if key not in ctx._cache:
        ctx._cache[key] = make()
    return ctx._cache[key]


def _captions_key(ctx: EvalContext) -> str:
    return "own" if ctx.row == "real" else "target"


@torch.no_grad()
def _vse_images(ctx: EvalContext, images: np.ndarray) -> torch.Tensor:
    """φ_img of uint8 images [P, S, S, 3] from the VSE image encoder, L2-normalised: [P, D]."""
    tm = ctx.text_model
    x = to_unit(images)
    if x.shape[-1] != tm.config.image_size:
        x = F.interpolate(x, size=tm.config.image_size, mode="bilinear", align_corners=False)
    return F.normalize(tm.encode_images(x).float(), dim=1)


def _vse_texts(ctx: EvalContext, texts: list[str]) -> torch.Tensor:
    return F.normalize(ctx.text_model.encode_texts(texts).float(), dim=1)


@torch.no_grad()
def text_following(ctx: EvalContext, outputs: np.ndarray) -> dict[str, Any]:
    """The row's caption ranked among itself and DISTRACTORS captions of other test images by VSE cosine
    with the output: R-precision (how often it ranks first) and its mean and median rank (1 = best; a
    distractor scoring the same as the caption ranks above it)."""
    if not ctx.distractors.shape[1]:
        raise ConfigError("text_following needs captions of a third test image; raise evaluate.max_images.")
    phi_i = _vse_images(ctx, outputs)
    true = _cached(ctx, f"phi_{_captions_key(ctx)}", lambda: _vse_texts(ctx, ctx.captions)).to(phi_i.device)
    pool = _cached(ctx, "phi_pool", lambda: _vse_texts(ctx, caption_pool(ctx.split)[0])).to(phi_i.device)
    s_true = (phi_i * true).sum(dim=1)  # [P]
    idx = torch.from_numpy(ctx.distractors).to(phi_i.device)
    beaten = []
    for i in range(0, len(phi_i), 256):  # [256, M] similarities at a time, not [P, M]
        rows = slice(i, i + 256)
        beaten.append(((phi_i[rows] @ pool.t()).gather(1, idx[rows]) >= s_true[rows, None]).sum(dim=1))
    ranks = (1 + torch.cat(beaten)).cpu().numpy()  # a tie counts against the row's caption, as in r_precision
    n = ctx.distractors.shape[1] + 1
    return {
        "r_precision": float((ranks == 1).mean()),
        "mean_rank": float(ranks.mean()),
        "median_rank": float(np.median(ranks)),
        "candidates": n,
        "chance_r_precision": 1.0 / n,
        "chance_mean_rank": (n + 1) / 2,
    }


def object_weights(ctx: EvalContext) -> np.ndarray:
    """[P, S, S] float in [0, 1]: the source's object (the edited region). synth-birds: the rendered bird;
    photos: `sisgan.train.swaps.photo_mask` (what the colour-swap pairs recolour)."""
    from sisgan.train.swaps import photo_mask

    if ctx.synthetic:
        return _cached(ctx, "object", lambda: (~ground_truth(ctx)["background"]).astype(np.float64))
    return _cached(ctx, "object", lambda: photo_mask(ctx.sources))


def background(ctx: EvalContext) -> np.ndarray:
    """[P, S, S] bool: the pixels outside the object (synth-birds: sky and branch; photos: zero weight in
    the object mask)."""
    if ctx.synthetic:
        return ground_truth(ctx)["background"]
    return _cached(ctx, "background", lambda: object_weights(ctx) == 0)


def caption_colours(ctx: EvalContext) -> list[list[int]]:
    """The basic colours each of the row's captions names (sisgan.eval.colour.named_colours)."""
    return _cached(ctx, f"named_{_captions_key(ctx)}", lambda: [col.named_colours(c) for c in ctx.captions])


def colour_following(ctx: EvalContext, outputs: np.ndarray) -> dict[str, Any]:
    """For captions that name colours: how often a named colour's share of the object rises by at least
    evaluate.colour_min_rise (`colour_rise`), how often a named colour becomes the object's dominant one
    (`colour_dominant`), and how often the output's dominant colour is named at all (`colour_agreement`).

    rise and dominant count only what the edit has to change: a named colour that already dominates the
    source, and a pair whose source's dominant colour is already named, are left out (and counted).
    `colour_rise_first` is the rise of each caption's first named colour alone (a flower caption's first
    colour is mostly its petals'; the later ones name a centre, stamens or leaves, smaller parts). The
    `real` row (no edit) reports the agreement only: how often a photo's dominant colour is one its own
    caption names, the measure's own ceiling.
    """
    weights = object_weights(ctx)
    src = _cached(ctx, "colour_src", lambda: col.colour_shares(col.pixel_colours(ctx.sources), weights))
    out = col.colour_shares(col.pixel_colours(outputs), weights)
    named = caption_colours(ctx)
    src_dom, out_dom = src.argmax(axis=1), out.argmax(axis=1)
    with_colour = [k for k, cs in enumerate(named) if cs]
    result: dict[str, Any] = {"colour_pairs": len(with_colour)}
    if with_colour:
        result["colour_agreement"] = float(np.mean([out_dom[k] in named[k] for k in with_colour]))
    if ctx.row == "real":
        return result
    gains = [out[k, c] - src[k, c] for k in with_colour for c in named[k] if c != src_dom[k]]
    firsts = [out[k, named[k][0]] - src[k, named[k][0]] for k in with_colour if named[k][0] != src_dom[k]]
    edits = [k for k in with_colour if src_dom[k] not in named[k]]
    result |= {
        "named_colours": len(gains),
        "already_dominant": sum(len(named[k]) for k in with_colour) - len(gains),
        "edit_pairs": len(edits),
    }
    if gains:
        result["colour_rise"] = float(np.mean(np.asarray(gains) >= ctx.colour_min_rise))
        result["colour_gain"] = float(np.mean(gains))
    if firsts:
        result["colour_rise_first"] = float(np.mean(np.asarray(firsts) >= ctx.colour_min_rise))
    if edits:
        result["colour_dominant"] = float(np.mean([out_dom[k] in named[k] for k in edits]))
    return result


def keep(ctx: EvalContext, outputs: np.ndarray) -> dict[str, Any]:
    """What stays: SSIM (RGB and grey) and L1 in [0, 1] against the source, on the whole image and on the
    background only (means over the images that have background)."""
    bg = background(ctx)
    ssim = im.ssim_map(outputs, ctx.sources)  # [P, 3, S - 6, S - 6], once for the whole image and background
    result: dict[str, Any] = {
        "ssim": float(ssim.mean(dim=(1, 2, 3)).mean()),
        "ssim_grey": float(im.ssim(im.grey(outputs), im.grey(ctx.sources)).mean()),
        "l1": float(im.l1(outputs, ctx.sources).mean()),
        "background_share": float(bg.mean()),
    }
    bg_l1, bg_ssim = im.l1(outputs, ctx.sources, bg), im.masked_mean(ssim, bg)
    if np.isfinite(bg_l1).any():
        result["background_l1"] = float(np.nanmean(bg_l1))
    if np.isfinite(bg_ssim).any():
        result["background_ssim"] = float(np.nanmean(bg_ssim))
    return result


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
    "text_following": text_following,
    "colour_following": colour_following,
    "keep": keep,
    "retrieval": retrieval,
    "fid": fid,
}
_EDITS = ("model", "identity", "counterfactual", "tint", "described")
# The rows each metric is computed for: retrieval and FID say nothing new for a reference row, keep nothing
# for `real` (its pixels are the identity's), and the counterfactual metrics keep their synth-birds rows.
ROWS: dict[str, tuple[str, ...]] = {
    "counterfactual": ("model", "identity", "counterfactual"),
    "manipulative_precision": (*_EDITS, "real"),
    "text_following": (*_EDITS, "real"),
    "colour_following": (*_EDITS, "real"),
    "keep": _EDITS,
    "retrieval": ("model",),
    "fid": ("model",),
}


def check_metrics(names: tuple[str, ...]) -> None:
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ConfigError(
            f"params.yaml: evaluate.metrics has unknown {unknown}; choose from {list(METRICS)}."
        )


def tinted(ctx: EvalContext) -> np.ndarray:
    """The `tint` row: each source tinted toward the first colour its target caption names (unchanged where
    it names none), by evaluate.tint_strength (sisgan.eval.colour.tint)."""
    target = [cs[0] if cs else None for cs in caption_colours(ctx.row_view("tint"))]
    return _cached(ctx, "tint", lambda: col.tint(ctx.sources, target, ctx.tint_strength))


def reference_rows(ctx: EvalContext, names: tuple[str, ...] = tuple(ROWS)) -> dict[str, np.ndarray]:
    """The images of the reference rows that `names` are computed for (identity always): identity,
    counterfactual (synth-birds), real (the sources, read with their own captions), tint and described
    (photos: each pair's target photo, read like an edit of the source: a real flower the caption describes,
    so the text and colour measures' reach on real photos, and keep's value for a different photo)."""
    wanted = {row for n in names for row in ROWS[n]}
    rows = {"identity": ctx.sources}
    if ctx.synthetic and "counterfactual" in wanted:
        rows["counterfactual"] = ground_truth(ctx)["counterfactual"]
    if "real" in wanted:
        rows["real"] = ctx.sources
    if "tint" in wanted:
        rows["tint"] = tinted(ctx)
    if not ctx.synthetic and "described" in wanted:
        rows["described"] = ctx.crop(ctx.split.images[ctx.target_index])
    return rows


def evaluate_rows(
    ctx: EvalContext, model_outputs: np.ndarray, names: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """{row: {metric group: values}} for the model and the reference rows (each metric on its ROWS; a
    reference row that no requested metric is computed for is left out, except identity)."""
    check_metrics(names)
    out: dict[str, dict[str, Any]] = {}
    for row, images in {"model": model_outputs, **reference_rows(ctx, names)}.items():
        view = ctx.row_view(row)
        out[row] = {n: METRICS[n](view, images) for n in names if row in ROWS[n]}
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


# Section: the real-data targets (issue 19, on the flowers test classes).

TARGETS = {"colour_rise": 0.75, "background_l1": 0.03, "ssim": 0.6}


def real_targets(report: dict[str, Any], row: str = "model") -> dict[str, tuple[float, float, bool]]:
    """{name: (value, target, met)} of a row of an evaluation report (metrics/eval.json):

    - mean_rank: the target caption's mean rank among the candidates, at most halfway from the identity
      row's to the real row's (lower is better);
    - colour_rise >= 0.75; background_l1 <= 0.03 (in [0, 1]); ssim >= 0.6 (against the source).
    """
    needed = {
        "mean_rank": ("text_following", "mean_rank"),
        "colour_rise": ("colour_following", "colour_rise"),
        "background_l1": ("keep", "background_l1"),
        "ssim": ("keep", "ssim"),
    }

    def value(r: str, group: str, key: str) -> float:
        try:
            return float(report[r][group][key])
        except (KeyError, TypeError):
            raise ConfigError(
                f"the evaluation report has no {r}.{group}.{key}; the targets need evaluate.metrics to "
                "include text_following, colour_following and keep."
            ) from None

    identity, real = value("identity", *needed["mean_rank"]), value("real", *needed["mean_rank"])
    goal = identity + (real - identity) / 2
    rank = value(row, *needed["mean_rank"])
    out = {"mean_rank": (rank, goal, rank <= goal)}
    for name, target in TARGETS.items():
        v = value(row, *needed[name])
        out[name] = (v, target, v <= target if name == "background_l1" else v >= target)
    return out
