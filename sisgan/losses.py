"""The SISGAN objective: which texts each pair gets, which G outputs feed which terms, and the terms.

The training loop (sisgan.train.gan) only steps the phases:

    generated = loss.generate(batch)            # G once; both phases read it
    d_loss, _ = loss.d_phase(batch, generated)  # -> backward, D's optimizer step
    g_loss, _ = loss.g_phase(batch, generated)  # -> backward, G's optimizer step (D frozen inside)
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

Stats = dict[str, torch.Tensor]


@dataclasses.dataclass
class Batch:
    """One step's inputs, on the device. B images; the first B/2 rows get mismatching ("relevant") text.

    real [B, 3, S, S] in [-1, 1]; text [B, T]: φ of one of each image's own captions; noise [B, C]: the
    conditioning augmentation's ε. For a generator that reads words, tokens [B, L] int64: the same
    captions' token ids (0 = padding). With colour-swap pairs (gan.swap_weight), swap_text [B/2, T] (and
    swap_tokens) is the mismatching half's text, a colour-swapped caption of its own image, and
    swap_target [B/2, 3, S, S] the image recoloured alike: the edit's known answer.
    """

    real: torch.Tensor
    text: torch.Tensor
    noise: torch.Tensor
    tokens: torch.Tensor | None = None
    swap_target: torch.Tensor | None = None
    swap_text: torch.Tensor | None = None
    swap_tokens: torch.Tensor | None = None

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The batch's tensors as a flat tuple (what a CUDA graph's static inputs are copied from)."""
        return tuple(t for f in dataclasses.fields(self) if (t := getattr(self, f.name)) is not None)

    def with_tensors(self, tensors: tuple[torch.Tensor, ...]) -> Batch:
        """A batch like this one whose tensors are `tensors` (in the order of `tensors()`)."""
        present = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]
        return dataclasses.replace(self, **dict(zip(present, tensors, strict=True)))


@dataclasses.dataclass
class Generated:
    """G(x, t̄) and what the terms need with it: the condition's μ, log σ [B, C] and the two texts [B, T];
    with the grounding term, the repaint's word attention [B, S·S, L] and the relevant token ids [B, L]."""

    fake: torch.Tensor
    mu: torch.Tensor
    log_sigma: torch.Tensor
    mismatch: torch.Tensor
    relevant: torch.Tensor
    attention: torch.Tensor | None = None
    tokens: torch.Tensor | None = None


@dataclasses.dataclass(frozen=True)
class ColourWords:
    """The swap pairs' colour classes as the grounding term reads them: rgb [K, 3] in [-1, 1], and for each
    token id of the vocabulary the class its word names, word_class [V] int64 (-1: not a colour word)."""

    rgb: torch.Tensor
    word_class: torch.Tensor


GROUND_TOLERANCE = 40 / 127.5  # RGB distance (40 of 255) within which a pixel has a class's colour
OBJECT_THRESHOLD = 30 / 127.5  # sisgan.train.swaps.object_mask's threshold, in [-1, 1] units


def object_pixels(images: torch.Tensor, threshold: float = OBJECT_THRESHOLD) -> torch.Tensor:
    """[B, 3, S, S] in [-1, 1] -> [B, S, S] bool: pixels unlike both ends of their row (the swap pairs' own
    object test, sisgan.train.swaps.object_mask: a plain backdrop varies mostly from top to bottom)."""
    left = (images - images[..., :1]).norm(dim=1)
    right = (images - images[..., -1:]).norm(dim=1)
    return torch.minimum(left, right) > threshold


def nearest_class(images: torch.Tensor, colours: ColourWords) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, 3, S, S] in [-1, 1] -> (RGB distance to the nearest colour class, that class) per pixel, [B, P]."""
    pixels = images.float().flatten(2).transpose(1, 2)  # [B, P, 3]
    return torch.cdist(pixels, colours.rgb.expand(len(images), -1, -1)).min(-1)


def mean_per_region(
    values: torch.Tensor, cls: torch.Tensor, weight: torch.Tensor, classes: int
) -> torch.Tensor:
    """Per-pixel values [B, P] averaged within each (image, colour class) region (cls [B, P] in
    [0, classes), pixels weighed by weight [B, P], 0 = left out), then over the regions present: each region
    weighs alike, however few its pixels."""
    region = F.one_hot(cls, classes).float() * weight[..., None]  # [B, P, K]
    pixels_in = region.sum(1)  # [B, K]
    per_region = (region * values[..., None]).sum(1) / pixels_in.clamp_min(1)
    present = pixels_in > 0
    return (per_region * present).sum() / present.sum().clamp_min(1)


def grounding_loss(
    attention: torch.Tensor, target: torch.Tensor, tokens: torch.Tensor, colours: ColourWords
) -> torch.Tensor:
    """Cross-entropy of the repaint's word attention [B, S·S, L] against the words that name each object
    pixel's colour in target [B, 3, S, S] (the image G should produce for tokens [B, L]).

    The L2 swap term weighs a part by its area, so the few pixels of a beak barely steer where they read
    from, and they read the head's words (RESULTS.md, "The beak"). Here a pixel whose target colour is a
    colour class the caption names should attend to that class's words (any of them: two parts of one colour
    are both right), and every colour region of an image weighs alike, a beak's 2 pixels as a body's 60.
    Label-free: the classes and their words are the swap pairs' own (sisgan.train.swaps). Pixels off the
    object, of no named colour or between colours are left out.
    """
    dist, cls = nearest_class(target, colours)  # [B, P]
    known = (dist < GROUND_TOLERANCE) & object_pixels(target.float()).flatten(1)
    cls = torch.where(known, cls, -1)
    named = colours.word_class[tokens]  # [B, L]
    match = (cls[:, :, None] == named[:, None, :]) & known[:, :, None]  # [B, P, L]
    nll = -(attention.float() * match).sum(-1).clamp_min(1e-6).log()  # [B, P]
    return mean_per_region(nll, cls.clamp_min(0), match.any(-1).float(), colours.rgb.shape[0])


def part_loss(
    fake: torch.Tensor, target: torch.Tensor, source: torch.Tensor, colours: ColourWords
) -> torch.Tensor:
    """L2 of fake [B, 3, S, S] against the edit target [B, 3, S, S] over the source's object (source
    [B, 3, S, S]: a recoloured part could match its backdrop), a mean per (image, colour region of the
    target), then over regions.

    The swap term's L2 is a mean over pixels, so a beak's 1-2 pixels barely count: G neither learns to
    repaint a named beak nor to keep an unnamed one, which takes the head's colour (RESULTS.md, "where keep
    is lost"). Here the beak weighs as much as the body, whether the target changes it or keeps it; weighing
    only the changed regions (or only the kept ones) trades one for the other (RESULTS.md). The regions are
    the target's pixels of one of the swap pairs' colour classes; pixels between colours are left out.
    """
    dist, cls = nearest_class(target, colours)  # [B, P]
    on_object = object_pixels(source.float()).flatten(1) & (dist < GROUND_TOLERANCE)  # [B, P]
    error = (fake.float() - target.float()).pow(2).mean(1).flatten(1)  # [B, P]
    return mean_per_region(error, cls, on_object.float(), colours.rgb.shape[0])


def mismatching_rows(batch: int) -> int:
    """How many leading rows of a batch get mismatching "relevant" text (the rest keep their own)."""
    return batch // 2


def mismatched_and_relevant(text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """From matching φ(t) [B, T]: mismatching t̂ (another image's caption: roll by one) and "relevant" t̄
    (first half mismatching, second half matching), as the reference implementation builds them."""
    return text.roll(1, dims=0), relevant_rows(text)


def relevant_rows(rows: torch.Tensor, swapped: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image rows [B, ...] of the matching captions (φ, token ids) -> those of the relevant
    texts t̄: the first half another image's (rolled by one within the half), or `swapped` [B/2, ...] when
    given (the colour-swap pairs); the second half their own."""
    half = mismatching_rows(rows.shape[0])
    first = rows[:half].roll(-1, dims=0) if swapped is None else swapped
    return torch.cat([first, rows[half:]])


def kl_divergence(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) || N(0, 1)), averaged over batch and dimensions (the reference's normalisation)."""
    return torch.mean(-log_sigma + 0.5 * (torch.exp(2 * log_sigma) + mu.pow(2) - 1))


def _bce(logit: torch.Tensor, target: float) -> torch.Tensor:
    """Binary cross-entropy of logits [B] against a constant label, in fp32 (also under bf16 autocast)."""
    logit = logit.float()
    return F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, target))


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Inside, `module`'s parameters take no gradient: a graph built here leaves them out (and, under
    DistributedDataParallel, out of the all-reduce)."""
    module.requires_grad_(False)
    try:
        yield
    finally:
        module.requires_grad_(True)


class DiscriminatorStep(nn.Module):
    """The D phase's three scores in one forward call (so DistributedDataParallel sees one forward):
    (real, matching), (real, mismatching) and (fake, relevant) logits, each [B].

    The two real pairs share one encoding of the real images: with batch-norm in training mode the
    encoder sees the same batch either way, so this equals two full passes.
    """

    def __init__(self, discriminator: nn.Module) -> None:
        super().__init__()
        self.d = discriminator

    def forward(
        self,
        real: torch.Tensor,
        fake: torch.Tensor,
        text: torch.Tensor,
        mismatch: torch.Tensor,
        relevant: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = self.d.encode(real)
        return self.d.score(feats, text), self.d.score(feats, mismatch), self.d(fake, relevant)


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """λ of each G term. The paper: kl 1, the rest 0."""

    kl: float = 1.0
    recon: float = 0.0
    swap: float = 0.0
    ground: float = 0.0
    part: float = 0.0


class SisganLoss:
    """Owns the GAN maths; the training loop only steps the phases.

    D = BCE(D(x, t), 1) + ½ BCE(D(x, t̂), 0) + ½ BCE(D(G(x, t̄), t̄), 0)
    G = BCE(D(G(x, t̄), t̄), 1) + λ_KL · KL
        + λ_rec · L1(G(x, t), x) on the matching half (TAGAN's reconstruction: keep what the text does
          not change)
        + λ_swap · L2(G(x, t_swap), x_swap) on the mismatching half, where t_swap is one of x's captions
          with its colour words swapped and x_swap is x recoloured alike (sisgan.train.swaps): an edit with
          a known answer, built from the data without labels. L2, not L1: while G is unsure of the colour,
          L1's optimum (the median) is to change nothing.
        + λ_ground · grounding_loss over both halves' targets (x_swap, x): each object pixel's repaint
          attention on the words that name its target colour (output "paint" with the swap pairs)
        + λ_part · part_loss over both halves' targets: their L2 over the object, every colour region alike

    generator and d_step may be wrapped (DistributedDataParallel, torch.compile); discriminator is the bare
    D that the G phase scores with.
    """

    def __init__(
        self,
        generator: nn.Module,
        d_step: nn.Module,
        discriminator: nn.Module,
        weights: LossWeights,
        colours: ColourWords | None = None,
    ) -> None:
        self.g, self.d_step, self.d, self.w = generator, d_step, discriminator, weights
        if (weights.ground or weights.part) and colours is None:
            raise ValueError("the grounding and part terms need the swap pairs' colour classes")
        self.colours = colours

    def generate(self, batch: Batch) -> Generated:
        """G(x, t̄) once: the D phase scores it detached, the G phase with gradients (after D's update)."""
        mismatch = batch.text.roll(1, dims=0)
        relevant = relevant_rows(batch.text, batch.swap_text)
        tokens = None if batch.tokens is None else relevant_rows(batch.tokens, batch.swap_tokens)
        per_word = () if tokens is None else (tokens,)
        if not self.w.ground:
            fake, mu, log_sigma = self.g(batch.real, relevant, batch.noise, *per_word)
            return Generated(fake, mu, log_sigma, mismatch, relevant)
        fake, mu, log_sigma, attention = self.g(
            batch.real, relevant, batch.noise, *per_word, with_attention=True
        )
        return Generated(fake, mu, log_sigma, mismatch, relevant, attention, tokens)

    def d_phase(self, batch: Batch, gen: Generated) -> tuple[torch.Tensor, Stats]:
        """-> (D loss, {d_real, d_mismatch, d_fake})."""
        real_logit, mis_logit, fake_logit = self.d_step(
            batch.real, gen.fake.detach(), batch.text, gen.mismatch, gen.relevant
        )
        stats = {
            "d_real": _bce(real_logit, 1.0),
            "d_mismatch": 0.5 * _bce(mis_logit, 0.0),
            "d_fake": 0.5 * _bce(fake_logit, 0.0),
        }
        return stats["d_real"] + stats["d_mismatch"] + stats["d_fake"], stats

    def g_phase(self, batch: Batch, gen: Generated) -> tuple[torch.Tensor, Stats]:
        """-> (G loss, {g_adv, kl, recon, swap, ground, part}); D is only a critic here: its weights take no
        gradient."""
        with frozen(self.d):
            g_adv = _bce(self.d(gen.fake, gen.relevant), 1.0)
        kl = kl_divergence(gen.mu.float(), gen.log_sigma.float())
        half = mismatching_rows(len(batch.real))
        recon = (gen.fake[half:].float() - batch.real[half:].float()).abs().mean()  # matching text: = input
        loss = g_adv + self.w.kl * kl + self.w.recon * recon
        swap = torch.zeros((), device=gen.fake.device)
        if batch.swap_target is not None:
            swap = (gen.fake[:half].float() - batch.swap_target.float()).pow(2).mean()
            loss = loss + self.w.swap * swap
        stats = {"g_adv": g_adv, "kl": kl, "recon": recon.detach(), "swap": swap.detach()}
        stats |= {"ground": swap * 0, "part": swap * 0}
        if self.w.ground or self.w.part:
            assert batch.swap_target is not None and self.colours is not None
            target = torch.cat([batch.swap_target, batch.real[half:]])  # what G should give for t̄
        if self.w.ground:
            assert gen.attention is not None and gen.tokens is not None
            ground = grounding_loss(gen.attention, target, gen.tokens, self.colours)
            loss = loss + self.w.ground * ground
            stats["ground"] = ground.detach()
        if self.w.part:
            part = part_loss(gen.fake, target, batch.real, self.colours)
            loss = loss + self.w.part * part
            stats["part"] = part.detach()
        return loss, stats
