"""Length-prefixed JSON frames: 4-byte big-endian length, then UTF-8 JSON.

Used on every channel: host <-> server (container stdin/stdout), server <-> zygote,
server/runner <-> candidate. Readers bound the frame size so a hostile peer cannot make them
allocate without limit.
"""

from __future__ import annotations

import json
import math
import os
import struct
from typing import Any

HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 64 * 1024 * 1024


class FrameError(Exception):
    """The peer sent something that is not a valid frame (or closed mid-frame)."""


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return HEADER.pack(len(body)) + body


def write_frame(fd: int, message: dict[str, Any]) -> None:
    data = memoryview(encode_frame(message))
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            if remaining == size:
                return None
            raise FrameError("stream closed in the middle of a frame")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, max_size: int = DEFAULT_MAX_FRAME, strict: bool = True) -> dict[str, Any] | None:
    """Blocking read of one frame; None at a clean end of stream. ``strict``: see decode_body."""
    header = _read_exact(fd, HEADER.size)
    if header is None:
        return None
    return _read_body(fd, header, max_size, strict=strict)


def read_frame_after(fd: int, prefix: bytes, max_size: int = DEFAULT_MAX_FRAME) -> dict[str, Any]:
    """Blocking read of the frame whose first bytes (``prefix``, at least one) were already read."""
    header = prefix[: HEADER.size]
    if len(header) < HEADER.size:
        rest = _read_exact(fd, HEADER.size - len(header))
        if rest is None:
            raise FrameError("stream closed in the middle of a frame")
        header += rest
    return _read_body(fd, header, max_size, prefix[HEADER.size :])


def _read_body(
    fd: int, header: bytes, max_size: int, already: bytes = b"", strict: bool = True
) -> dict[str, Any]:
    (size,) = HEADER.unpack(header)
    if size > max_size:
        raise FrameError(f"frame of {size} bytes exceeds the {max_size}-byte limit")
    rest = _read_exact(fd, size - len(already)) if size > len(already) else b""
    if rest is None:
        raise FrameError("stream closed in the middle of a frame")
    return decode_body(already + rest, strict)


MAX_JSON_INT_DIGITS = 1000


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _bounded_int(text: str) -> int:
    if len(text) > MAX_JSON_INT_DIGITS:
        raise ValueError(f"integer literal of {len(text)} digits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e400 parses as inf, which no frame may carry (encode refuses it)
        raise ValueError(f"float literal {text[:40]} overflows")
    return value


def decode_body(body: bytes, strict: bool = True) -> dict[str, Any]:
    """Strict JSON: no NaN/Infinity (not even as an overflowing literal), no huge integer
    literals (a hostile peer's frame must fail here, cleanly, rather than later in code that
    assumes well-formed data). Frames that stay inside the sandbox (a program's calls and answers
    between it and the test runner) need not be strict: ``strict=False`` skips the per-number
    checks (integer literals then stop at Python's own 4300 digits) and admits NaN and Infinity.
    Whatever reaches the server, and through it the host, is decoded strictly."""
    try:
        if strict:
            message = json.loads(
                body, parse_constant=_reject_constant, parse_int=_bounded_int, parse_float=_finite_float
            )
        else:
            message = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FrameError(f"frame is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(message, dict):
        raise FrameError("frame is not a JSON object")
    return message


class FrameBuffer:
    """Incremental parser for non-blocking readers: feed bytes, pop complete frames."""

    def __init__(self, max_size: int = DEFAULT_MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max_size = max_size

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return [frame for frame, _ in self.feed_sized(data)]

    def feed_sized(self, data: bytes) -> list[tuple[dict[str, Any], int]]:
        """Like ``feed``, with each frame's size in bytes on the wire."""
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buffer)
            if size > self._max_size:
                raise FrameError(f"frame of {size} bytes exceeds the {self._max_size}-byte limit")
            if len(self._buffer) < HEADER.size + size:
                break
            body = bytes(self._buffer[HEADER.size : HEADER.size + size])
            del self._buffer[: HEADER.size + size]
            frames.append((decode_body(body), HEADER.size + size))
        return frames

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)
