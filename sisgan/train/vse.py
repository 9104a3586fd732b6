"""Visual-semantic pretraining of the text encoder φ(t) against an image encoder (ranking loss)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from sisgan.config import TextConfig
from sisgan.data.loader import DeviceLoader, center_crop
from sisgan.data.shards import SplitData
from sisgan.errors import ConfigError
from sisgan.eval.retrieval import r_precision, recall_at_k
from sisgan.pixels import unit_range
from sisgan.text.encoder import init_from_word_vectors
from sisgan.text.model import TextModel
from sisgan.text.tokenizer import Vocabulary


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


@dataclasses.dataclass
class CaptionTable:
    """All captions of a split as padded token ids, for sampling one caption per image on the device.

    tokens [M, L], lengths [M] (CPU, for packing), start/count [N]:
    image i owns rows start[i] : start[i] + count[i].
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    start: torch.Tensor
    count: torch.Tensor

    @classmethod
    def build(
        cls, vocab: Vocabulary, captions: Sequence[Sequence[str]], device: torch.device
    ) -> CaptionTable:
        flat = [t for caps in captions for t in caps]
        ids, lengths = vocab.encode_batch(flat)
        count = torch.tensor([len(c) for c in captions])
        start = torch.cumsum(count, 0) - count
        return cls(
            torch.from_numpy(ids).to(device), torch.from_numpy(lengths), start.to(device), count.to(device)
        )

    def sample(self, idx: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One random caption per image index: (tokens [B, L], lengths [B])."""
        u = torch.rand(idx.shape[0], device=idx.device, generator=generator)
        rows = self.start[idx] + (u * self.count[idx]).long()
        return self.tokens[rows], self.lengths[rows.cpu()]


def _check(cfg: TextConfig, train: SplitData) -> None:
    size = train.images.shape[1]
    if cfg.image_size > size:
        raise ConfigError(
            f"params.yaml: text.image_size = {cfg.image_size} is larger than the stored images ({size}); "
            f"lower it or raise data.load_size."
        )


@torch.no_grad()
def evaluate_retrieval(
    model: TextModel, split: SplitData, image_size: int, ks=(1, 5, 10)
) -> dict[str, float]:
    """Recall@K on a split (each image against its first caption, all images candidates) and AttnGAN's
    R-precision (the first caption among 100: 1 true + 99 of other images)."""
    images = torch.from_numpy(split.images).permute(0, 3, 1, 2)
    img = torch.cat(
        [
            model.encode_images(center_crop(unit_range(images[i : i + 256].to(model.device)), image_size))
            for i in range(0, len(images), 256)
        ]
    )
    txt = model.encode_texts([caps[0] for caps in split.captions])
    return recall_at_k(img, txt, ks) | r_precision(img, txt)


def pretrain(
    cfg: TextConfig,
    train: SplitData,
    test: SplitData,
    *,
    seed: int = 0,
    device: str = "cpu",
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[TextModel, list[dict[str, Any]]]:
    """Train φ(t) and the image encoder with the bidirectional ranking loss. Returns (model, history).

    history: one dict per epoch with loss, test recall@K (text->image, image->text) and seconds.
    """
    _check(cfg, train)
    torch.manual_seed(seed)
    dev = torch.device(device)
    vocab = Vocabulary.build((c for caps in train.captions for c in caps), cfg.min_count, cfg.max_words)
    model = TextModel.create(cfg, vocab)
    if cfg.word_vectors:
        init_from_word_vectors(model.text_encoder, cfg.word_vectors, vocab)
    model.to(dev)
    captions = CaptionTable.build(vocab, train.captions, dev)
    loader = DeviceLoader(train.images, cfg.batch_size, cfg.image_size, device=dev, seed=seed)
    params = [p for m in (model.text_encoder, model.image_encoder) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)

    history = []
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.text_encoder.train()
        model.image_encoder.train()
        total = torch.zeros((), device=dev)  # accumulated on the device: no per-step sync
        for idx, images in loader:
            tokens, lengths = captions.sample(idx, loader.generator)
            loss = pairwise_ranking_loss(
                model.image_encoder(images), model.text_encoder(tokens, lengths), cfg.margin
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        row = {"epoch": epoch, "loss": float(total) / max(1, len(loader))}
        row |= evaluate_retrieval(model, test, cfg.image_size)
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        if on_epoch:
            on_epoch(row)
    return model.eval(), history
