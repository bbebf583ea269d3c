"""executor/harness/wire.py: length-prefixed JSON frames over pipes and incremental buffers."""

from __future__ import annotations

import json
import os
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from executor.harness import wire
from executor.harness.wire import (
    DEFAULT_MAX_FRAME,
    HEADER,
    FrameBuffer,
    FrameError,
    decode_body,
    encode_frame,
    read_frame,
    write_frame,
)


class Pipe:
    """An os.pipe whose ends are closed once, by the test or at teardown (never a reused fd)."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        self._open = {self.r, self.w}

    def close_writer(self) -> None:
        self._close(self.w)

    def _close(self, fd: int) -> None:
        if fd in self._open:
            self._open.discard(fd)
            os.close(fd)

    def close_all(self) -> None:
        for fd in list(self._open):
            self._close(fd)


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    ends = Pipe()
    yield ends
    ends.close_all()


def raw_frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


# ---- encoding -------------------------------------------------------------------------------------------


def test_header_is_four_byte_big_endian() -> None:
    assert HEADER.size == 4
    assert encode_frame({"a": 1}) == b'\x00\x00\x00\x07{"a":1}'
    assert encode_frame({}) == b"\x00\x00\x00\x02{}"


def test_encoding_is_compact_ascii_json() -> None:
    frame = encode_frame({"s": "é☃", "l": [1, 2]})
    body = frame[4:]
    assert struct.unpack(">I", frame[:4])[0] == len(body)
    assert body == b'{"s":"\\u00e9\\u2603","l":[1,2]}'
    assert decode_body(body) == {"s": "é☃", "l": [1, 2]}


def test_raw_utf8_bodies_are_read() -> None:
    assert decode_body('{"s":"é☃"}'.encode()) == {"s": "é☃"}


def test_non_finite_floats_cannot_be_framed() -> None:
    with pytest.raises(ValueError):
        encode_frame({"x": float("nan")})
    with pytest.raises(ValueError):
        encode_frame({"x": float("inf")})


def test_default_max_frame() -> None:
    assert DEFAULT_MAX_FRAME == 64 * 1024 * 1024


# ---- blocking reads over a pipe -------------------------------------------------------------------------


def test_round_trip_over_a_pipe(pipe: Pipe) -> None:
    r, w = pipe.r, pipe.w
    messages: list[dict[str, Any]] = [
        {"op": "ping"},
        {"event": "returned", "value": [1, {"$int": "9" * 30}]},
        {},
    ]
    for message in messages:
        write_frame(w, message)
    for message in messages:
        assert read_frame(r) == message


def test_clean_end_of_stream_is_none(pipe: Pipe) -> None:
    r, w = pipe.r, pipe.w
    write_frame(w, {"last": True})
    pipe.close_writer()
    assert read_frame(r) == {"last": True}
    assert read_frame(r) is None
    assert read_frame(r) is None


def test_empty_stream_is_none(pipe: Pipe) -> None:
    r = pipe.r
    pipe.close_writer()
    assert read_frame(r) is None


def test_stream_closed_inside_the_header(pipe: Pipe) -> None:
    r, w = pipe.r, pipe.w
    os.write(w, b"\x00\x00")
    pipe.close_writer()
    with pytest.raises(FrameError, match="closed in the middle"):
        read_frame(r)


def test_stream_closed_inside_the_body(pipe: Pipe) -> None:
    r, w = pipe.r, pipe.w
    os.write(w, raw_frame(b'{"a":1}')[:-3])
    pipe.close_writer()
    with pytest.raises(FrameError, match="closed in the middle"):
        read_frame(r)


def test_stream_closed_right_after_the_header_is_a_frame_error(pipe: Pipe) -> None:
    r, w = pipe.r, pipe.w
    os.write(w, HEADER.pack(10))
    pipe.close_writer()
    with pytest.raises(FrameError):
        read_frame(r)


def test_stream_closed_right_after_the_header_says_so(pipe: Pipe) -> None:
    r, w = pipe.r, pipe.w
    os.write(w, HEADER.pack(10))
    pipe.close_writer()
    with pytest.raises(FrameError, match="closed in the middle"):
        read_frame(r)


def test_oversize_frame_is_rejected_from_its_header(pipe: Pipe) -> None:
    r, w = pipe.r, pipe.w
    os.write(w, HEADER.pack(101))  # no body needed: the header alone is refused
    with pytest.raises(FrameError, match="101 bytes exceeds the 100-byte limit"):
        read_frame(r, max_size=100)


def test_frame_at_the_size_limit_is_accepted(pipe: Pipe) -> None:
    r, w = pipe.r, pipe.w
    body = json.dumps({"k": "x" * 92}, separators=(",", ":")).encode()
    assert len(body) == 100
    os.write(w, raw_frame(body))
    assert read_frame(r, max_size=100) == {"k": "x" * 92}


def test_huge_declared_size_is_rejected_with_the_default_limit(pipe: Pipe) -> None:
    r, w = pipe.r, pipe.w
    os.write(w, b"\xff\xff\xff\xff")
    with pytest.raises(FrameError, match="exceeds"):
        read_frame(r)


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"42", b"null", b"true"])
def test_non_object_json_is_rejected(pipe: Pipe, body: bytes) -> None:
    r, w = pipe.r, pipe.w
    os.write(w, raw_frame(body))
    with pytest.raises(FrameError, match="not a JSON object"):
        read_frame(r)


@pytest.mark.parametrize("body", [b"{not json}", b"", b"\xff\xfe\x00", b'{"a": NaN', b"{} {}"])
def test_invalid_json_is_rejected(pipe: Pipe, body: bytes) -> None:
    r, w = pipe.r, pipe.w
    os.write(w, raw_frame(body))
    with pytest.raises(FrameError, match="not valid JSON"):
        read_frame(r)


def test_deeply_nested_json_is_a_frame_error_not_a_crash() -> None:
    with pytest.raises(FrameError):
        decode_body(b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}")


def test_frame_larger_than_the_pipe_buffer(pipe: Pipe) -> None:
    r, w = pipe.r, pipe.w
    message = {"data": "z" * (3 << 20)}
    writer = threading.Thread(target=write_frame, args=(w, message))
    writer.start()
    try:
        assert read_frame(r) == message
    finally:
        writer.join(timeout=10)
    assert not writer.is_alive()


# ---- FrameBuffer ----------------------------------------------------------------------------------------


def test_buffer_whole_frames() -> None:
    buffer = FrameBuffer()
    data = encode_frame({"a": 1}) + encode_frame({"b": 2}) + encode_frame({"c": [3]})
    assert buffer.feed(data) == [{"a": 1}, {"b": 2}, {"c": [3]}]
    assert buffer.pending_bytes == 0
    assert buffer.feed(b"") == []


def test_buffer_byte_by_byte() -> None:
    buffer = FrameBuffer()
    data = encode_frame({"event": "ready"}) + encode_frame({"event": "returned", "value": 5})
    seen: list[dict[str, Any]] = []
    for index in range(len(data)):
        seen += buffer.feed(data[index : index + 1])
        assert buffer.pending_bytes == len(data[: index + 1]) - sum(len(encode_frame(f)) for f in seen)
    assert seen == [{"event": "ready"}, {"event": "returned", "value": 5}]
    assert buffer.pending_bytes == 0


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 10])
def test_buffer_split_feeds(cut: int) -> None:
    first, second = encode_frame({"x": "hello"}), encode_frame({"y": None})
    data = first + second
    buffer = FrameBuffer()
    frames = buffer.feed(data[:cut])
    assert frames == []
    assert buffer.pending_bytes == cut
    frames = buffer.feed(data[cut : len(first) + 2])
    assert frames == [{"x": "hello"}]
    assert buffer.pending_bytes == 2
    assert buffer.feed(data[len(first) + 2 :]) == [{"y": None}]
    assert buffer.pending_bytes == 0


def test_buffer_partial_header_waits() -> None:
    buffer = FrameBuffer()
    assert buffer.feed(b"\x00\x00\x00") == []
    assert buffer.pending_bytes == 3
    assert buffer.feed(b"\x02{") == []
    assert buffer.feed(b"}") == [{}]


def test_buffer_rejects_an_oversize_header_before_the_body_arrives() -> None:
    buffer = FrameBuffer(max_size=16)
    with pytest.raises(FrameError, match="17 bytes exceeds the 16-byte limit"):
        buffer.feed(HEADER.pack(17))


def test_buffer_accepts_a_frame_of_exactly_max_size() -> None:
    body = b'{"k":"' + b"a" * 8 + b'"}'
    assert len(body) == 16
    assert FrameBuffer(max_size=16).feed(raw_frame(body)) == [{"k": "a" * 8}]


def test_buffer_rejects_oversize_after_good_frames() -> None:
    buffer = FrameBuffer(max_size=16)
    with pytest.raises(FrameError):
        buffer.feed(encode_frame({"a": 1}) + HEADER.pack(1000))


def test_buffer_rejects_non_object_and_invalid_json() -> None:
    with pytest.raises(FrameError, match="not a JSON object"):
        FrameBuffer().feed(raw_frame(b"[1]"))
    with pytest.raises(FrameError, match="not valid JSON"):
        FrameBuffer().feed(raw_frame(b"{oops"))
    with pytest.raises(FrameError, match="not valid JSON"):
        FrameBuffer().feed(raw_frame(b""))


def test_buffer_default_limit_is_the_module_default() -> None:
    with pytest.raises(FrameError, match=str(wire.DEFAULT_MAX_FRAME)):
        FrameBuffer().feed(HEADER.pack(wire.DEFAULT_MAX_FRAME + 1))


def test_buffer_and_blocking_reader_agree(pipe: Pipe) -> None:
    r, w = pipe.r, pipe.w
    messages = [{"i": i, "s": "x" * i} for i in range(20)]
    data = b"".join(encode_frame(m) for m in messages)
    os.write(w, data)
    pipe.close_writer()
    assert [read_frame(r) for _ in messages] == messages
    assert read_frame(r) is None
    buffer = FrameBuffer()
    fed: list[dict[str, Any]] = []
    for start in range(0, len(data), 7):
        fed += buffer.feed(data[start : start + 7])
    assert fed == messages
