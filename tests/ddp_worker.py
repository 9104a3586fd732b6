"""Runs in each spawned process of the DDP test (kept out of test_*.py so it is not collected)."""

from __future__ import annotations

import torch
import torch.distributed as dist


def checksum(trainer) -> float:  # noqa: ANN001
    return float(sum(p.detach().double().sum() for m in (trainer.g, trainer.d) for p in m.parameters()))


def run(rank: int, world: int, init_file: str, out_file: str, cfg_dict: dict, data) -> None:  # noqa: ANN001
    from sisgan.config import GANConfig
    from sisgan.train.distributed import DistInfo
    from sisgan.train.gan import Trainer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    trainer = Trainer(
        GANConfig.from_dict(cfg_dict), data, seed=5, device="cpu", dist=DistInfo(rank, world, rank)
    )
    sums, seen, losses = [], [], []
    for _, idx, real in trainer.batches(0):
        stats = trainer.train_step(real, idx)
        sums.append(checksum(trainer))
        seen.append(idx.tolist())
        losses.append(float(stats["d_loss"]))
    gathered = [None] * world
    dist.all_gather_object(gathered, {"sums": sums, "seen": seen, "losses": losses})
    if rank == 0:
        torch.save(gathered, out_file)
    dist.destroy_process_group()
