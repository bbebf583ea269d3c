"""One decode step captured as a CUDA graph and replayed: no per-kernel launches from Python.

``GraphedStep`` captures a step function that reads and writes only fixed buffers (the static
decoder's ``_forward``: its inputs, its caches, a 0-dim column tensor) and returns next-token
logits; ``replay`` re-runs the recorded kernels on whatever those buffers hold now. Weights are
the model's own tensors: a broadcast copied into them in place (``models.weight_sync``) is read by
the next replay without re-capture.

What it guarantees: each step (one per attention width of a decoder) is captured once and checked
on capture: the replayed logits must equal an eager run of the same step from the same state
(``matches_eager``), else the caller falls back to eager steps. What it does not: it cannot see
a step that reads Python state changing between replays (the width of a narrowing cache, a Python
int position); such a step must not be captured, which is why only the static-shapes path is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

__all__ = ["GraphedStep", "capture_checked", "matches_eager"]

log = logging.getLogger(__name__)

WARMUP_STEPS = 2
"""eager runs on a side stream before capture, as torch's CUDA graph notes ask (lazy init, autotune)"""


class GraphedStep:
    """``step`` (no arguments, returns a tensor) recorded on ``device``; call to replay it."""

    def __init__(self, step: Callable[[], torch.Tensor], device: torch.device) -> None:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                step()
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = step()

    def __call__(self) -> torch.Tensor:
        self.graph.replay()
        return self.output


def matches_eager(replayed: torch.Tensor, eager: torch.Tensor) -> bool:
    """Whether a replay's logits equal the eager step's: ``|r - e| <= 1e-3 + 1e-3 |e|`` everywhere,
    the same argmax in every row, and nothing NaN that the eager step did not produce."""
    if replayed.shape != eager.shape:
        return False
    close = torch.isclose(replayed.float(), eager.float(), rtol=1e-3, atol=1e-3, equal_nan=True)
    return bool(close.all()) and torch.equal(replayed.argmax(dim=-1), eager.argmax(dim=-1))


def capture_checked(
    step: Callable[[], torch.Tensor], device: torch.device
) -> tuple[GraphedStep | None, torch.Tensor]:
    """Run ``step`` eagerly, capture it, replay it from the same state and compare: (the graph, or
    None where capture failed or disagreed, and the step's logits). ``step`` must be idempotent
    for a given state (it writes only the current column), so running it again is harmless."""
    eager = step().clone()
    try:
        graphed = GraphedStep(step, device)
        replayed = graphed()
    except Exception as error:  # noqa: BLE001 - any op the model runs may refuse capture; eager still works
        log.warning("decoding without a CUDA graph: capturing the decode step failed (%s)", error)
        return None, eager
    if not matches_eager(replayed, eager):
        log.warning("decoding without a CUDA graph: its replay disagreed with the eager decode step")
        return None, eager
    return graphed, replayed
