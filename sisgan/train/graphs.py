"""One whole training step (D and G forward, backward, both optimizer steps) as a CUDA graph.

At batch 64 the SISGAN step is a few hundred small kernels, and on an H100 launching them costs more
than running them. Captured once, the step replays with one launch. The maths is the eager step's:
the graph replays the same kernels on static buffers that each step's inputs are copied into.

Capture needs warm-up steps first (cuDNN/cuBLAS set-up, Adam's lazily created state). Those steps
would train the nets, so the weights, batch-norm statistics and optimizer state are copied before them
and written back in place afterwards: the captured graph then reads exactly the tensors training goes on
with, and a graphed run follows the same trajectory as an eager one (`tests/test_gan.py` checks this on
the CPU through `EagerStepGraph`, which has the same protocol without CUDA).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import torch
from torch import nn

Outputs = dict[str, torch.Tensor]


class StepGraph(Protocol):
    def warmup(self, fn: Callable[[], Outputs], steps: int) -> None: ...
    def capture(self, fn: Callable[[], Outputs]) -> None: ...
    def replay(self) -> Outputs: ...


class CudaStepGraph:
    """torch.cuda.CUDAGraph around one call of `fn`; replay returns the same (static) output tensors."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: Outputs = {}

    def warmup(self, fn: Callable[[], Outputs], steps: int) -> None:
        # On a side stream, as torch.cuda.graphs' documentation asks, so no lazy set-up lands in the capture.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(steps):
                fn()
        torch.cuda.current_stream(self.device).wait_stream(side)

    def capture(self, fn: Callable[[], Outputs]) -> None:
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = fn()

    def replay(self) -> Outputs:
        assert self.graph is not None, "capture() first"
        self.graph.replay()
        return self.outputs


class EagerStepGraph:
    """The StepGraph protocol without CUDA: capture only records `fn` (as a CUDA capture runs nothing) and
    replay calls it. Lets the CPU tests exercise the capture/restore bookkeeping of the graphed path."""

    def __init__(self) -> None:
        self.fn: Callable[[], Outputs] | None = None

    def warmup(self, fn: Callable[[], Outputs], steps: int) -> None:
        for _ in range(steps):
            fn()

    def capture(self, fn: Callable[[], Outputs]) -> None:
        self.fn = fn

    def replay(self) -> Outputs:
        assert self.fn is not None, "capture() first"
        return self.fn()


class TrainingState:
    """In-place copy of what a training step changes: parameters, buffers and optimizer state.

    `restore` writes the copy back into the same tensors (never new ones), so a graph captured after it
    keeps pointing at the live weights and moments. Optimizer state that did not exist at the copy (Adam
    creates its moments on its first step) is reset to zero, which is what that first step starts from.
    """

    def __init__(self, modules: Iterable[nn.Module], optimizers: Iterable[torch.optim.Optimizer]) -> None:
        self.modules, self.optimizers = list(modules), list(optimizers)
        self.saved_modules = [{k: v.clone() for k, v in m.state_dict().items()} for m in self.modules]
        self.saved_optim = [_clone_state(o.state) for o in self.optimizers]

    @torch.no_grad()
    def restore(self) -> None:
        for module, saved in zip(self.modules, self.saved_modules, strict=True):
            for k, v in module.state_dict().items():
                v.copy_(saved[k])
        for opt, saved in zip(self.optimizers, self.saved_optim, strict=True):
            for p, state in opt.state.items():
                before = saved.get(p)
                for k, v in state.items():
                    if not torch.is_tensor(v):
                        continue
                    if before is None:
                        v.zero_()
                    else:
                        v.copy_(before[k])


def _clone_state(state: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {p: {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()} for p, s in state.items()}
