"""Data parallelism for the learner: ``learner.world_size`` ranks, one process each, in
torch.distributed's default process group (NCCL on GPUs, gloo on CPU).

Every rank holds the whole model and optimizer and is given the whole batch (rank 0 reads it and
broadcasts it); each trains on its own contiguous share of the rows, with every loss scaled by its
share of the *whole* batch (learner/micro.py), so the sum of the ranks' gradients is the whole
batch's gradient. Gradients are summed across ranks in flat buckets, then every rank clips and
steps the same way: the weights stay identical on every rank without being sent again.

A single process uses ``DataParallel.single()``, whose collectives do nothing.
"""

from __future__ import annotations

import datetime
import logging
import pickle
from collections.abc import Iterable, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

__all__ = ["DataParallel", "share_of_rows"]

log = logging.getLogger(__name__)

T = TypeVar("T")

BUCKET_BYTES = 64 * 1024 * 1024
"""gradients are summed in flat buckets of about this size: few collective calls, bounded extra memory"""


def share_of_rows(total: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous share of ``total`` rows: sizes differ by at most one, the first
    ``total % world_size`` ranks taking one more. A rank may get none (total < world_size)."""
    base, extra = divmod(total, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


class DataParallel:
    """This process's place among the learner ranks, and the collectives the learner needs."""

    def __init__(self, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size} learner ranks")
        if world_size > 1 and not dist.is_initialized():
            raise RuntimeError("a data-parallel learner needs torch.distributed set up: DataParallel.join")
        self.rank, self.world_size = rank, world_size

    @classmethod
    def single(cls) -> DataParallel:
        return cls(0, 1)

    @classmethod
    def join(
        cls, address: str, rank: int, world_size: int, device: torch.device, timeout_s: float = 1800.0
    ) -> DataParallel:
        """Join the learner ranks' group at ``address`` (``host:port`` of rank 0); blocks until all
        ``world_size`` ranks have joined. NCCL when the learner's device is a GPU, else gloo."""
        if world_size == 1:
            return cls.single()
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend,
            init_method=f"tcp://{address}",
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
        log.info("learner rank %d of %d joined (%s, %s)", rank, world_size, backend, address)
        return cls(rank, world_size)

    @property
    def is_main(self) -> bool:
        """Rank 0 reads the data, writes checkpoints and sends weights."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def rows(self, total: int) -> slice:
        """This rank's share of ``total`` rows."""
        return share_of_rows(total, self.rank, self.world_size)

    def broadcast_object(self, obj: T | None) -> T:
        """Rank 0's ``obj`` on every rank (others pass None)."""
        if not self.active:
            return obj  # type: ignore[return-value]
        # Pickled by hand into a byte tensor: broadcast_object_list would go through the device
        # NCCL needs, and the payload (token ids, rewards) is small.
        device = self._device()
        if self.is_main:
            payload = torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8).to(device)
            size = torch.tensor([payload.numel()], dtype=torch.long, device=device)
        else:
            size = torch.zeros(1, dtype=torch.long, device=device)
        dist.broadcast(size, src=0)
        if not self.is_main:
            payload = torch.empty(int(size.item()), dtype=torch.uint8, device=device)
        dist.broadcast(payload, src=0)
        return obj if self.is_main else pickle.loads(payload.cpu().numpy().tobytes())  # type: ignore[return-value]

    def sum_floats(self, values: Sequence[float]) -> list[float]:
        """The element-wise sum of ``values`` over the ranks."""
        if not self.active:
            return list(values)
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self._device())
        dist.all_reduce(tensor)
        return [float(v) for v in tensor.tolist()]

    def sum_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Replace each parameter's gradient with its sum over the ranks, in flat buckets.

        A parameter no rank computed a gradient for keeps ``grad = None`` (as in one process, so
        AdamW skips it the same way); one that only some ranks reached counts as zero elsewhere.
        """
        if not self.active:
            return
        params = [p for p in parameters if p.requires_grad]
        has_grad = [p.grad is not None for p in params]
        reached = torch.tensor(has_grad, dtype=torch.float32, device=self._device())
        dist.all_reduce(reached)
        live = [p for p, seen in zip(params, reached.tolist(), strict=True) if seen > 0]
        for p in live:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        for bucket in _buckets(live, BUCKET_BYTES):
            flat = torch.cat([p.grad.reshape(-1) for p in bucket])  # type: ignore[union-attr]
            dist.all_reduce(flat)
            offset = 0
            for p in bucket:
                count = p.numel()
                p.grad.copy_(flat[offset : offset + count].view_as(p))  # type: ignore[union-attr]
                offset += count

    def weight_spread(self, module: torch.nn.Module) -> float:
        """How far apart the ranks' weights are: the largest minus the smallest over the ranks of
        a checksum (sum of |w|). Ranks apply identical steps, so anything above 0 is a bug."""
        if not self.active:
            return 0.0
        with torch.no_grad():
            checksum = sum(float(p.detach().double().abs().sum()) for p in module.parameters())
        high = torch.tensor([checksum, -checksum], dtype=torch.float64, device=self._device())
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        return float(high[0] + high[1])

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (identical starting weights)."""
        if not self.active:
            return
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()

    def _device(self) -> torch.device:
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


def _buckets(params: Sequence[torch.nn.Parameter], max_bytes: int) -> list[list[torch.nn.Parameter]]:
    """Consecutive parameters of one dtype and device, up to ``max_bytes`` a bucket (a larger
    parameter goes alone)."""
    out: list[list[torch.nn.Parameter]] = []
    size = 0
    for p in params:
        nbytes = p.numel() * p.element_size()
        last = out[-1] if out else None
        fits = last is not None and size + nbytes <= max_bytes
        if last is None or not fits or last[0].dtype != p.dtype or last[0].device != p.device:
            out.append([p])
            size = nbytes
        else:
            last.append(p)
            size += nbytes
    return out
