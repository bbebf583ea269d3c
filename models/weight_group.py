"""The collective weight broadcast: the learner (rank 0) sends its weights to every sampler (ranks
1..N) over a process group of their own, in buckets (issue 14).

The group is standalone: built from its own ``TCPStore`` (the learner's, on a free port), never
the default process group, which belongs to the data-parallel learner ranks. gloo moves CPU
tensors, NCCL CUDA ones. The bytes on the wire are the layout of models/weight_sync.py: one flat
buffer per dtype, sent in slices of ``bucket_bytes`` (the sender packs one bucket while the
previous one is on the wire, so it never holds a second copy of the model). A receiver writes into
a staging copy of those buffers and applies it between sampling rounds (``WeightInbox``), so the
sender never waits for a round to end.
"""

from __future__ import annotations

import datetime
import logging
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn

from .weight_sync import WeightLayout, check_fits, copy_into, model_tensors

__all__ = [
    "GroupAddress",
    "SyncGroup",
    "SyncHost",
    "WeightInbox",
    "WeightSender",
    "bucket_slices",
    "open_store",
]

log = logging.getLogger(__name__)

Backend = Literal["gloo", "nccl"]


@dataclass(frozen=True)
class GroupAddress:
    """What every member needs to join (chosen by the learner, passed on by the driver)."""

    host: str
    """the learner's node address; its TCPStore listens there"""
    port: int
    world_size: int
    """1 + the number of samplers"""
    backend: Backend
    bucket_bytes: int
    timeout_s: float


def open_store(host: str, world_size: int, timeout_s: float) -> tuple[dist.TCPStore, int]:
    """Rank 0's store, on a free port of ``host`` chosen by the system; (store, port)."""
    store = dist.TCPStore(
        host, 0, world_size, is_master=True, wait_for_workers=False, timeout=_delta(timeout_s)
    )
    return store, store.port


class SyncGroup:
    """One rank's membership of a weight-sync group."""

    def __init__(
        self,
        address: GroupAddress,
        rank: int,
        tensors: Mapping[str, torch.Tensor],
        store: dist.TCPStore | None = None,
    ) -> None:
        """Join as ``rank`` with the model's ``tensors`` (blocks until every rank has joined)."""
        timeout = _delta(address.timeout_s)
        if store is None:
            store = dist.TCPStore(
                address.host, address.port, address.world_size, is_master=False, timeout=timeout
            )
        self.address, self.rank = address, rank
        self.layout = _agree_on_layout(store, rank, address.world_size, tensors, address.timeout_s)
        """the sender's layout, which every receiver's staging follows"""
        self.store = store  # rank 0's must outlive the group: members reach each other through it
        self.group = _process_group(address, store, rank, _own_host(address))
        self.device = torch.device("cuda", torch.cuda.current_device()) if address.backend == "nccl" else None

    def broadcast(self, tensor: torch.Tensor) -> dist.Work:
        options = dist.BroadcastOptions()
        options.rootRank = 0
        return self.group.broadcast([tensor], options)

    def close(self) -> None:
        try:
            self.group.shutdown()
        except RuntimeError as exc:  # a peer already gone: nothing left to release cleanly
            log.warning("weight-sync group (rank %d) did not shut down cleanly: %s", self.rank, exc)


class WeightSender:
    """Rank 0: sends the model's weights, version first, bucket by bucket."""

    def __init__(self, group: SyncGroup, model: nn.Module) -> None:
        self.group, self.model = group, model
        device = group.device or torch.device("cpu")
        # Two bucket buffers: one is filled while the other is on the wire.
        size = group.address.bucket_bytes
        self._buckets = [torch.empty(size, dtype=torch.uint8, device=device) for _ in range(2)]

    def send(self, version: int) -> None:
        tensors = model_tensors(self.model)
        layout = WeightLayout.of(tensors)
        if layout != self.group.layout:
            raise ValueError("the model's layout changed since it joined the weight-sync group")
        self.group.broadcast(_header(version, self._buckets[0].device)).wait()
        pending: list[dist.Work | None] = [None, None]
        slices = bucket_slices(layout, self.group.address.bucket_bytes)
        for index, (dtype, start, stop) in enumerate(slices):
            slot = index % 2
            if pending[slot] is not None:
                pending[slot].wait()  # type: ignore[union-attr]
            bucket = self._buckets[slot][: stop - start]
            _fill(bucket, layout, tensors, dtype, start, stop)
            pending[slot] = self.group.broadcast(bucket)
        for work in pending:
            if work is not None:
                work.wait()


class SyncHost:
    """Rank 0 over a group's life: its store and address when made, then ``join`` with the model
    (once the driver has told every member the address), then any number of ``send``."""

    def __init__(
        self, host: str, world_size: int, backend: Backend, bucket_bytes: int, timeout_s: float
    ) -> None:
        self.store, port = open_store(host, world_size, timeout_s)
        self.address = GroupAddress(host, port, world_size, backend, bucket_bytes, timeout_s)
        self.sender: WeightSender | None = None

    def join(self, model: nn.Module) -> None:
        """Blocks until every member has joined."""
        group = SyncGroup(self.address, 0, model_tensors(model), self.store)
        self.sender = WeightSender(group, model)

    def send(self, version: int) -> None:
        if self.sender is None:
            raise RuntimeError("the learner has not joined its weight-sync group (join_sync_group)")
        self.sender.send(version)

    def close(self) -> None:
        if self.sender is not None:
            self.sender.group.close()
        self.sender = None


class WeightInbox:
    """Ranks 1..N: receive into a staging copy of the weights (in any thread), and apply the newest
    staged weights to the model at a moment of the owner's choosing (between sampling rounds)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.group: SyncGroup | None = None
        self._lock = threading.Lock()
        self._staging: dict[str, torch.Tensor] = {}
        self._staged: int | None = None
        """the version in staging not yet applied"""
        self._staging_for: tuple[WeightLayout, str] | None = None

    def join(self, address: GroupAddress, rank: int) -> None:
        self.leave()
        group = SyncGroup(address, rank, model_tensors(self.model))
        with self._lock:
            device = str(group.device or "cpu")
            if self._staging_for != (group.layout, device):  # kept across rejoins: allocating is slow
                self._staging = group.layout.allocate(device)
                self._staging_for = (group.layout, device)
            self.group = group

    def receive(self) -> int:
        """Receive one broadcast into staging; the version received."""
        group = self.group
        if group is None:
            raise RuntimeError("this sampler is in no weight-sync group (join_sync_group first)")
        with self._lock:  # an apply waits for a receive in progress rather than read half of it
            self._staged = None
            header = _header(0, next(iter(self._staging.values())).device)
            group.broadcast(header).wait()
            slices = bucket_slices(group.layout, group.address.bucket_bytes)
            works = [group.broadcast(self._staging[dtype][start:stop]) for dtype, start, stop in slices]
            for work in works:
                work.wait()
            self._staged = int(header[0])
            return self._staged

    def apply(self, current_version: int) -> int | None:
        """Copy the staged weights into the model if they are new and not older than
        ``current_version`` (the model may have been given newer weights another way); the version
        applied, or None."""
        with self._lock:
            staged, self._staged = self._staged, None
            if staged is None or staged < current_version or self.group is None:
                return None
            copy_into(self.model, self.group.layout, self._staging, staged)
            return staged

    def leave(self) -> None:
        group, self.group = self.group, None
        if group is not None:
            group.close()


def bucket_slices(layout: WeightLayout, bucket_bytes: int) -> Iterator[tuple[str, int, int]]:
    """(dtype, start byte, stop byte) of each bucket, over every dtype's buffer in layout order; the
    same on every rank, so sender and receivers agree without exchanging them."""
    for dtype, _ in layout.sizes:
        total = layout.nbytes(dtype)
        for start in range(0, total, bucket_bytes):
            yield dtype, start, min(start + bucket_bytes, total)


def _fill(
    bucket: torch.Tensor,
    layout: WeightLayout,
    tensors: dict[str, torch.Tensor],
    dtype: str,
    start: int,
    stop: int,
) -> None:
    """Copy the bytes [start, stop) of ``dtype``'s flat buffer from the model's tensors."""
    with torch.no_grad():
        for entry in layout.entries:
            if entry.dtype != dtype:
                continue
            itemsize = tensors[entry.name].element_size()
            first = entry.offset * itemsize
            last = first + entry.numel * itemsize
            if last <= start or first >= stop:
                continue
            source = tensors[entry.name].detach().reshape(-1).view(torch.uint8)
            lo, hi = max(first, start), min(last, stop)
            bucket[lo - start : hi - start].copy_(source[lo - first : hi - first])


def _header(version: int, device: torch.device) -> torch.Tensor:
    return torch.tensor([version], dtype=torch.int64, device=device)


def _agree_on_layout(
    store: dist.Store, rank: int, world_size: int, tensors: Mapping[str, torch.Tensor], timeout_s: float
) -> WeightLayout:
    """The sender's layout, checked by every receiver against its own model before any collective;
    each rank then reads every rank's verdict, so a mismatch fails on every rank at once with the
    same message (instead of a hang)."""
    if rank == 0:
        store.set("layout", WeightLayout.of(tensors).to_json())
    layout = WeightLayout.from_json(store.get("layout").decode())
    problem = ""
    if rank > 0:
        try:
            check_fits(layout, tensors, "the learner's weights")
        except ValueError as exc:
            problem = str(exc)
    store.set(f"verdict/{rank}", problem)
    keys = [f"verdict/{r}" for r in range(world_size)]
    store.wait(keys, _delta(timeout_s))
    problems = [f"rank {r}: {text}" for r in range(world_size) if (text := store.get(keys[r]).decode())]
    if problems:
        raise ValueError(f"the weight-sync group cannot form: {' | '.join(problems)}")
    return layout


def _process_group(
    address: GroupAddress, store: dist.TCPStore, rank: int, own_host: str
) -> dist.ProcessGroup:
    timeout = _delta(address.timeout_s)
    prefixed = dist.PrefixStore("weights/", store)
    if address.backend == "nccl":
        options = dist.ProcessGroupNCCL.Options()
        options._timeout = timeout
        return dist.ProcessGroupNCCL(prefixed, rank, address.world_size, options)
    options = dist.ProcessGroupGloo._Options()
    options._timeout = timeout
    options._devices = [dist.ProcessGroupGloo.create_device(hostname=own_host)]
    return dist.ProcessGroupGloo(prefixed, rank, address.world_size, options)


def _own_host(address: GroupAddress) -> str:
    """This node's address on the interface that reaches the learner (what gloo should listen on):
    a UDP socket 'connected' to it sends nothing but picks the route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((address.host, address.port))
            return str(probe.getsockname()[0])
        except OSError:
            return address.host


def _delta(seconds: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=seconds)
