"""Losses: the VSE ranking loss and the SISGAN adversarial objective."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_ranking_loss(images: torch.Tensor, texts: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """Bidirectional hinge ranking loss on L2-normalised embeddings (Kiros et al. 2014).

    images, texts: [B, D], row i of each is a matching pair; every other row is a negative.
    Sum over negatives, mean over the batch.
    """
    v = F.normalize(images, dim=1)
    t = F.normalize(texts, dim=1)
    scores = v @ t.t()  # [B, B]; scores[i, j] = cos(image i, text j)
    pos = scores.diag()
    off = ~torch.eye(scores.shape[0], dtype=torch.bool, device=scores.device)
    cost_text = (margin - pos[:, None] + scores).clamp(min=0) * off  # image i vs wrong texts
    cost_image = (margin - pos[None, :] + scores).clamp(min=0) * off  # text j vs wrong images
    return (cost_text.sum() + cost_image.sum()) / scores.shape[0]


# Section: SISGAN.


def mismatching_rows(batch: int) -> int:
    """How many leading rows of a batch get mismatching "relevant" text (the rest keep their own)."""
    return batch // 2


def mismatched_and_relevant(text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """From matching φ(t) [B, T]: mismatching t̂ (another image's caption: roll by one) and "relevant" t̄
    (first half mismatching, second half matching), as the reference implementation builds them."""
    half = mismatching_rows(text.shape[0])
    mismatch = text.roll(1, dims=0)
    relevant = torch.cat([text[:half].roll(-1, dims=0), text[half:]])
    return mismatch, relevant


def kl_divergence(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) || N(0, 1)), averaged over batch and dimensions (the reference's normalisation)."""
    return torch.mean(-log_sigma + 0.5 * (torch.exp(2 * log_sigma) + mu.pow(2) - 1))


class DiscriminatorStep(torch.nn.Module):
    """The D step's three scores in one forward call (so DistributedDataParallel sees one forward):
    (real, matching), (real, mismatching) and (fake, relevant) logits, each [B].

    The two real pairs share one encoding of the real images: with batch-norm in training mode the
    encoder sees the same batch either way, so this equals two full passes.
    """

    def __init__(self, discriminator: torch.nn.Module) -> None:
        super().__init__()
        self.d = discriminator

    def forward(self, real, fake, text, mismatch, relevant):  # noqa: ANN001, ANN201
        feats = self.d.encode(real)
        return self.d.score(feats, text), self.d.score(feats, mismatch), self.d(fake, relevant)


class GeneratorStep(torch.nn.Module):
    """The G forward of a step in one call (so DistributedDataParallel sees one forward):
    (image, relevant text, noise) -> (fake, μ, log σ, cycled). With `cycle` on, cycled is G run again on
    the mismatching half's output with that half's own text, G(G(x, t̄), t) [B/2, 3, S, S]; else None.
    """

    def __init__(self, generator: torch.nn.Module, cycle: bool = False) -> None:
        super().__init__()
        self.g, self.cycle = generator, cycle

    def forward(self, real, relevant, noise, text=None):  # noqa: ANN001, ANN201
        fake, mu, log_sigma = self.g(real, relevant, noise)
        if not self.cycle:
            return fake, mu, log_sigma, None
        half = mismatching_rows(real.shape[0])
        cycled = self.g(fake[:half], text[:half], noise[:half].roll(1, dims=0))[0]
        return fake, mu, log_sigma, cycled


class SisganLoss:
    """Owns the GAN maths; the training loop only steps the phases.

    D = BCE(D(x, t), 1) + ½ BCE(D(x, t̂), 0) + ½ BCE(D(G(x, t̄), t̄), 0)
    G = BCE(D(G(x, t̄), t̄), 1) + λ_KL · KL

    Two improvements from later work, both off in the paper profile:
    + λ_rec · L1(G(x, t), x) on the matching half of the batch (TAGAN's reconstruction: keep what the
      text does not change), and
    + λ_vse · ranking loss between the frozen VSE image embedding of G(x, t̄) and φ(t̄) (a direct
      text-image matching signal, as AttnGAN's DAMSM loss gives its generator), and
    + λ_cyc · L1(G(G(x, t̄), t), x) on the mismatching half (CycleGAN's cycle consistency with the
      source's own caption: undoing an edit needs the colours t names painted exactly where they were,
      a pixel-level signal for following the text that no critic gives), and
    + λ_swap · L2(G(x, t_swap), x_swap) on the mismatching half, where t_swap is one of x's captions with
      its colour words swapped and x_swap is x recoloured alike (sisgan.train.swaps): an edit with a
      known answer, built from the data without labels.
    """

    def __init__(
        self,
        kl_weight: float = 1.0,
        recon_weight: float = 0.0,
        vse_weight: float = 0.0,
        vse_encoder: torch.nn.Module | None = None,
        vse_size: int | None = None,
        margin: float = 0.2,
        cycle_weight: float = 0.0,
        swap_weight: float = 0.0,
    ) -> None:
        self.kl_weight, self.recon_weight, self.vse_weight = kl_weight, recon_weight, vse_weight
        self.cycle_weight, self.swap_weight = cycle_weight, swap_weight
        self.vse_encoder, self.vse_size, self.margin = vse_encoder, vse_size, margin
        if vse_weight and vse_encoder is None:
            raise ValueError("vse_weight > 0 needs the frozen VSE image encoder")

    def d_loss(self, d_step: torch.nn.Module, real, fake, text, mismatch, relevant):  # noqa: ANN001, ANN201
        """-> (loss, {d_real, d_mismatch, d_fake}); fake must already be detached."""
        real_logit, mis_logit, fake_logit = d_step(real, fake, text, mismatch, relevant)
        d_real = F.binary_cross_entropy_with_logits(
            real_logit.float(), torch.ones_like(real_logit, dtype=torch.float32)
        )
        d_mis = 0.5 * F.binary_cross_entropy_with_logits(
            mis_logit.float(), torch.zeros_like(mis_logit, dtype=torch.float32)
        )
        d_fake = 0.5 * F.binary_cross_entropy_with_logits(
            fake_logit.float(), torch.zeros_like(fake_logit, dtype=torch.float32)
        )
        return d_real + d_mis + d_fake, {"d_real": d_real, "d_mismatch": d_mis, "d_fake": d_fake}

    def g_loss(
        self,
        discriminator: torch.nn.Module,
        real,
        fake,
        mu,
        log_sigma,
        relevant,
        cycled=None,
        swapped=None,
    ):
        """-> (loss, {g_adv, kl, recon, vse, cycle, swap}); cycled from GeneratorStep when cycle_weight > 0,
        swapped [B/2, 3, S, S] the mismatching half's targets when swap_weight > 0 (its text is then the
        swapped captions)."""
        logit = discriminator(fake, relevant)
        g_adv = F.binary_cross_entropy_with_logits(logit.float(), torch.ones_like(logit, dtype=torch.float32))
        kl = kl_divergence(mu.float(), log_sigma.float())
        loss = g_adv + self.kl_weight * kl
        half = mismatching_rows(real.shape[0])
        recon = (fake[half:].float() - real[half:].float()).abs().mean()  # matching text: output = input
        if self.recon_weight:
            loss = loss + self.recon_weight * recon
        vse = torch.zeros((), device=fake.device)
        if self.vse_weight:
            image = fake
            if self.vse_size and fake.shape[-1] != self.vse_size:
                image = F.interpolate(fake, size=self.vse_size, mode="bilinear", align_corners=False)
            vse = pairwise_ranking_loss(self.vse_encoder(image).float(), relevant.float(), self.margin)
            loss = loss + self.vse_weight * vse
        cycle = torch.zeros((), device=fake.device)
        if self.cycle_weight:
            cycle = (cycled.float() - real[:half].float()).abs().mean()
            loss = loss + self.cycle_weight * cycle
        swap = torch.zeros((), device=fake.device)
        if self.swap_weight:
            # L2, not L1: while G is unsure of the colour L1's optimum (the median) is to change nothing.
            swap = (fake[:half].float() - swapped.float()).pow(2).mean()
            loss = loss + self.swap_weight * swap
        return loss, {
            "g_adv": g_adv,
            "kl": kl,
            "recon": recon.detach(),
            "vse": vse.detach(),
            "cycle": cycle.detach(),
            "swap": swap.detach(),
        }
