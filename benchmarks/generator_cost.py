"""Size and compute of the generator options: parameters and forward FLOPs per image.

    python -m benchmarks.generator_cost                      # the profiles and each word-level option
    python -m benchmarks.generator_cost --size 64 --words 20

Rows: the paper profile (sisgan.config.PAPER_RECIPE), the embedded default (params.yaml: paint output and
attention) and the default with either word-level option, or both, turned off. FLOPs are counted by
torch.utils.flop_counter (2 per multiply-add) for one image and a caption of --words tokens; the word reader's
GRUs are not decomposed by the counter, so their multiply-adds are added from the GRU's formula.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import print_table, write_json
from pipeline.common import load_params
from sisgan.config import GANConfig, apply_profile
from sisgan.models import generator_from_config
from sisgan.models.attention import WordReader
from sisgan.models.generator import Generator

VOCAB = 200  # a typical synth-birds vocabulary (its embedding is a lookup: no FLOPs)


def gru_flops(reader: WordReader, words: int) -> float:
    """Multiply-adds x 2 of the reader's two GRUs over `words` tokens: 3 gates, input and hidden matmuls."""
    dim = reader.forward_gru.hidden_size
    return 2.0 * words * 2 * 3 * (dim * dim + dim * dim)


def generator_cost(g: Generator, words: int) -> dict[str, float]:
    from torch.utils.flop_counter import FlopCounterMode

    s = g.image_size
    x, phi, noise = torch.zeros(1, 3, s, s), torch.zeros(1, g.text_dim), torch.zeros(1, g.cond_dim)
    tokens = (torch.arange(2, 2 + words)[None] % VOCAB,) if g.reads_words else ()
    g.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        g(x, phi, noise, *tokens)
    flops = float(counter.get_total_flops()) + (gru_flops(g.reader, words) if g.reader is not None else 0.0)
    return {"params_m": sum(p.numel() for p in g.parameters()) / 1e6, "gflop_per_image": flops / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=None, help="image size (default: each profile's)")
    ap.add_argument("--words", type=int, default=20, help="caption length in tokens")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    params = load_params()
    default, paper = params["gan"], apply_profile(params, "paper")
    text_dims = {"paper": int(paper["text"]["hidden_dim"])}
    variants = {
        "paper": paper["gan"],
        "default": default,
        "default, mask output, no attention": default | {"output": "mask", "attention": False},
        "default, paint output, no attention": default | {"output": "paint", "attention": False},
        "default, mask output, attention": default | {"output": "mask", "attention": True},
    }
    rows = []
    for name, gan in variants.items():
        cfg = GANConfig.from_dict(gan | ({"image_size": args.size} if args.size else {}))
        text_dim = text_dims.get(name, int(params["text"]["hidden_dim"]))
        g = generator_from_config(cfg, text_dim, load_vgg=False, vocab_size=VOCAB)
        rows.append({"generator": name, "image_size": cfg.image_size, **generator_cost(g, args.words)})
    print_table(rows, list(rows[0]))
    write_json("generator_cost", {"words": args.words, "vocab": VOCAB, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
