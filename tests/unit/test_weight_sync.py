"""Packed weights (models/weight_sync.py) and the collective broadcast (models/weight_group.py): exact
round trips for mixed dtypes and tied tensors, the version travelling with the weights, mismatches
refused, buffers moved out of band, and a gloo broadcast between ranks delivering identical weights."""

from __future__ import annotations

import io
import itertools
import pickle
import threading
from collections.abc import Callable

import pytest
import torch
from torch import nn

from models.weight_group import SyncHost, WeightInbox, bucket_slices
from models.weight_sync import PackedWeights, WeightLayout, WeightPacker, load_packed, model_tensors


class Mixed(nn.Module):
    """fp32, bf16 and fp16 parameters, an int64 buffer, and an output layer tied to the embedding
    (as T5 ties lm_head to shared)."""

    def __init__(self, seed: int, tied: bool = True) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.embed = nn.Embedding(11, 6)
        self.hidden = nn.Linear(6, 6)
        self.head = nn.Linear(6, 11, bias=False)
        self.scale = nn.Parameter(torch.randn(7, generator=generator).to(torch.bfloat16))
        self.gate = nn.Parameter(torch.randn(3, 5, generator=generator).half())
        self.register_buffer("counts", torch.randint(0, 1000, (9,), generator=generator))
        with torch.no_grad():
            for p in (self.embed.weight, self.hidden.weight, self.hidden.bias):
                p.copy_(torch.randn(p.shape, generator=generator))
        if tied:
            self.head.weight = self.embed.weight


def assert_same(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert sa[name].dtype == sb[name].dtype and torch.equal(sa[name], sb[name]), name


def test_round_trip_is_exact_for_mixed_dtypes_and_tied_tensors() -> None:
    source, target = Mixed(seed=1), Mixed(seed=2)
    packed = WeightPacker().pack(source, version=12)
    load_packed(target, packed)
    assert_same(source, target)
    assert target.head.weight is target.embed.weight  # still tied after the copy
    # The tied tensor travels once, under its first name, the other as an alias.
    tied = [e for e in packed.layout.entries if e.aliases]
    assert [(e.name, e.aliases) for e in tied] == [("embed.weight", ("head.weight",))]
    float32 = 11 * 6 + 6 * 6 + 6  # embed (= head), hidden weight and bias
    assert dict(packed.layout.sizes) == {"bfloat16": 7, "float16": 15, "float32": float32, "int64": 9}
    assert packed.nbytes == packed.layout.total_bytes == 7 * 2 + 15 * 2 + 108 * 4 + 9 * 8


def test_an_untied_receiver_gets_every_copy() -> None:
    source, target = Mixed(seed=1), Mixed(seed=2, tied=False)
    load_packed(target, WeightPacker().pack(source, version=1))
    assert_same(source, target)
    assert target.head.weight is not target.embed.weight


def test_the_version_travels_with_the_weights_through_pickle() -> None:
    packed = WeightPacker().pack(Mixed(seed=1), version=41)
    out_of_band: list[pickle.PickleBuffer] = []
    data = pickle.dumps(packed, protocol=5, buffer_callback=out_of_band.append)
    # One out-of-band buffer per dtype (Ray writes them into the object store without pickling
    # them); in band only the manifest.
    assert len(out_of_band) == len(packed.layout.sizes)
    assert sum(memoryview(b).nbytes for b in out_of_band) == packed.nbytes
    back: PackedWeights = pickle.loads(data, buffers=out_of_band)
    assert back.version == 41 and back.layout == packed.layout
    target = Mixed(seed=3)
    load_packed(target, back)
    assert_same(Mixed(seed=1), target)
    assert {name: t.shape for name, t in back.tensors().items()} == {
        name: t.shape for name, t in Mixed(seed=1).state_dict().items()
    }


def test_weights_that_do_not_fit_are_refused_and_the_model_is_untouched() -> None:
    class Wider(Mixed):
        def __init__(self) -> None:
            super().__init__(seed=5)
            self.hidden = nn.Linear(6, 8)
            self.extra = nn.Parameter(torch.zeros(2))

    packed = WeightPacker().pack(Mixed(seed=1), version=3)
    target = Wider()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match="policy version 3 do not fit") as raised:
        load_packed(target, packed)
    message = str(raised.value)
    assert "missing from the weights: extra" in message
    assert "hidden.weight (sent [6, 6], model [8, 6])" in message
    assert "same policy.model" in message
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_a_manifest_that_disagrees_with_its_buffers_is_refused() -> None:
    packed = WeightPacker().pack(Mixed(seed=1), version=3)
    short = dict(packed.buffers, float32=packed.buffers["float32"][:-4])
    with pytest.raises(ValueError, match="float32 buffer does not match the manifest"):
        PackedWeights(packed.layout, short, 3)


def test_the_packer_reuses_a_buffer_only_when_nobody_holds_it() -> None:
    model, packer = Mixed(seed=1), WeightPacker()
    first = packer.pack(model, version=1)
    held = first.buffers["float32"]
    with torch.no_grad():
        model.hidden.bias.add_(1.0)
    second = packer.pack(model, version=2)
    assert second.buffers["float32"] is not held  # first is still alive: never overwritten
    assert not torch.equal(first.tensors()["hidden.bias"], second.tensors()["hidden.bias"])
    address = id(second.buffers["float32"])
    del first, held, second
    assert id(packer.pack(model, version=3).buffers["float32"]) == address


def test_buckets_cover_every_byte_once() -> None:
    layout = WeightLayout.of(model_tensors(Mixed(seed=1)))
    for size in (1, 7, 64, 10_000):
        covered: dict[str, list[tuple[int, int]]] = {}
        for dtype, start, stop in bucket_slices(layout, size):
            assert 0 < stop - start <= size
            covered.setdefault(dtype, []).append((start, stop))
        for dtype, spans in covered.items():
            assert spans[0][0] == 0 and spans[-1][1] == layout.nbytes(dtype)
            assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))


def test_the_layout_crosses_as_plain_data() -> None:
    layout = WeightLayout.of(model_tensors(Mixed(seed=1)))
    assert WeightLayout.from_json(layout.to_json()) == layout
    forged = layout.to_json().replace('"int64"', '"os.system"')
    with pytest.raises(ValueError, match=r"unknown dtype 'os\.system'"):
        WeightLayout.from_json(forged)


def _together(*calls: Callable[[], object]) -> list[object]:
    """Run each call in its own thread (ranks joining a group block until all have joined)."""
    results: list[object] = [None] * len(calls)

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except Exception as exc:  # noqa: BLE001 - returned to the test
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_a_collective_broadcast_delivers_identical_weights_applied_only_when_asked() -> None:
    source, targets = Mixed(seed=1), [Mixed(seed=2), Mixed(seed=3, tied=False)]
    host = SyncHost("127.0.0.1", 3, "gloo", bucket_bytes=100, timeout_s=30)  # buckets split tensors
    inboxes = [WeightInbox(t) for t in targets]
    joins = [lambda i=i, inbox=inbox: inbox.join(host.address, i + 1) for i, inbox in enumerate(inboxes)]
    assert _together(lambda: host.join(source), *joins) == [None, None, None]
    try:
        results = _together(lambda: host.send(7), *[inbox.receive for inbox in inboxes])
        assert results == [None, 7, 7]
        assert not torch.equal(targets[0].hidden.weight, source.hidden.weight)  # staged, not applied
        assert [inbox.apply(current_version=0) for inbox in inboxes] == [7, 7]
        for target in targets:
            assert_same(source, target)
        assert inboxes[0].apply(current_version=7) is None  # nothing new staged
        # Staged weights older than the model's (it got newer ones another way) are dropped.
        assert _together(lambda: host.send(5), inboxes[0].receive, inboxes[1].receive)[1:] == [5, 5]
        assert inboxes[0].apply(current_version=8) is None
    finally:
        host.close()
        for inbox in inboxes:
            inbox.leave()


def test_ranks_whose_models_differ_all_refuse_to_form_a_group() -> None:
    class Other(Mixed):
        def __init__(self) -> None:
            super().__init__(seed=2)
            self.hidden = nn.Linear(6, 6, bias=False)

    host = SyncHost("127.0.0.1", 2, "gloo", bucket_bytes=1 << 20, timeout_s=30)
    inbox = WeightInbox(Other())
    results = _together(lambda: host.join(Mixed(seed=1)), lambda: inbox.join(host.address, 1))
    for result in results:  # the same message on every rank, naming what differs
        assert isinstance(result, ValueError) and "same policy.model" in str(result)
        expected = "rank 1: the learner's weights do not fit this model: not in this model: hidden.bias"
        assert expected in str(result)
    with pytest.raises(RuntimeError, match="in no weight-sync group"):
        inbox.receive()


def _receive_in_child(address: object, results: object) -> None:
    """Rank 1 in a process of its own: receive one broadcast, apply it, hand back the weights."""
    model = Mixed(seed=2)
    inbox = WeightInbox(model)
    inbox.join(address, 1)  # type: ignore[arg-type]
    version = inbox.receive()
    applied = inbox.apply(current_version=0)
    inbox.leave()
    weights = io.BytesIO()  # as bytes: shared-memory tensors would die with this process
    torch.save(model.state_dict(), weights)
    results.put((version, applied, weights.getvalue()))  # type: ignore[attr-defined]


@pytest.mark.slow  # a second interpreter that imports torch
def test_a_collective_broadcast_between_two_processes() -> None:
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    source = Mixed(seed=1)
    host = SyncHost("127.0.0.1", 2, "gloo", bucket_bytes=64, timeout_s=60)
    results = context.Queue()
    child = context.Process(target=_receive_in_child, args=(host.address, results))
    child.start()
    try:
        host.join(source)
        host.send(9)
        version, applied, data = results.get(timeout=60)
    finally:
        host.close()
        child.join(timeout=60)
    assert child.exitcode == 0 and version == applied == 9
    expected, weights = source.state_dict(), torch.load(io.BytesIO(data))
    assert weights.keys() == expected.keys()
    for name, tensor in expected.items():
        assert weights[name].dtype == tensor.dtype and torch.equal(weights[name], tensor), name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_learner_reaches_cpu_and_cuda_samplers_both_ways() -> None:
    """Packing copies device to host; gloo carries CPU buckets from a CUDA model and a CUDA receiver
    applies its CPU staging to the device."""
    source = Mixed(seed=1).cuda()
    on_cpu = Mixed(seed=2)
    load_packed(on_cpu, WeightPacker().pack(source, version=2))
    assert_same(source.cpu(), on_cpu)
    source.cuda()
    targets = [Mixed(seed=3), Mixed(seed=4).cuda()]
    host = SyncHost("127.0.0.1", 3, "gloo", bucket_bytes=100, timeout_s=30)
    inboxes = [WeightInbox(t) for t in targets]
    joins = [lambda i=i, inbox=inbox: inbox.join(host.address, i + 1) for i, inbox in enumerate(inboxes)]
    try:
        assert _together(lambda: host.join(source), *joins) == [None, None, None]
        assert _together(lambda: host.send(3), *[inbox.receive for inbox in inboxes]) == [None, 3, 3]
        assert [inbox.apply(current_version=0) for inbox in inboxes] == [3, 3]
    finally:
        host.close()
        for inbox in inboxes:
            inbox.leave()
    for target in targets:
        assert_same(source.cpu(), target.cpu())
