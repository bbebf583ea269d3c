"""The assert-test runner: runs MBPP/HumanEval-style test code in its own process and reaches
the candidate only through calls over the control socket.

Guarantees: test code, its expected values and its builtins live in this process, which the
candidate cannot read (non-dumpable, separate address space) or patch; every value coming back
from the candidate is plain data decoded by values.decode, so a forged ``__eq__``, shadowed
builtins, patched modules or frame walking in the candidate cannot make an assert pass. The
verdict record goes to a pipe the candidate does not hold. Not guaranteed: test code that needs
candidate objects other than functions and plain data (classes, instances) gets a NameError or an
opaque value and fails.
"""

from __future__ import annotations

import builtins
import os
import resource
import traceback
from typing import Any, NoReturn

from . import sysutil, values, wire
from .candidate import register_source, user_traceback

MAX_MESSAGE = 2000


class CandidateError(Exception):
    """A non-builtin exception raised by the candidate, re-raised in the test code."""


class CandidateGone(Exception):
    """The candidate process exited or died while the tests were calling it."""

    def __init__(self, event: dict[str, Any] | None) -> None:
        super().__init__("the program exited while the tests were running")
        self.event = event


class CandidateProxy:
    """Callable stand-in for one of the candidate's functions."""

    def __init__(self, channel: Channel, name: str) -> None:
        self._channel, self.__name__ = channel, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._channel.call(self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<candidate function {self.__name__}>"


class Channel:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.raised: dict[int, dict[str, Any]] = {}

    def receive(self) -> dict[str, Any] | None:
        try:
            return wire.read_frame(self.fd)
        except (OSError, wire.FrameError):
            return None

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        encoded_args, encoded_kwargs = values.encode(list(args)), values.encode(kwargs)
        if "$unsupported" in repr(encoded_args) + repr(encoded_kwargs):
            raise TypeError(f"test passes a non-data argument to {name}(); only plain data can cross")
        try:
            wire.write_frame(
                self.fd, {"op": "call", "name": name, "args": encoded_args, "kwargs": encoded_kwargs}
            )
        except OSError:
            raise CandidateGone(None) from None
        event = self.receive()
        if event is None or event.get("event") == "exited":
            raise CandidateGone(event)
        if event.get("event") == "returned":
            return values.decode(event.get("value"))
        if event.get("event") == "raised":
            error = self._exception(event)
            self.raised[id(error)] = event
            raise error
        raise CandidateGone(event)

    @staticmethod
    def _exception(event: dict[str, Any]) -> BaseException:
        message = str(event.get("message", ""))[:MAX_MESSAGE]
        kind = getattr(builtins, str(event.get("type")), None) if event.get("builtin") else None
        if isinstance(kind, type) and issubclass(kind, Exception):
            try:
                return kind(message)
            except Exception:
                pass
        return CandidateError(f"{event.get('type')}: {message}")


def _record(fd: int, outcome: str, **details: Any) -> None:
    wire.write_frame(fd, {"outcome": outcome, **details})


def main(
    control_fd: int,
    result_fd: int,
    setup_code: str,
    test_code: str,
    entry_point: str | None,
    memory_bytes: int,
) -> NoReturn:
    sysutil.make_non_dumpable()
    if memory_bytes > 0:  # values decoded from the program are bounded by its own limit, twice over
        resource.setrlimit(resource.RLIMIT_AS, (2 * memory_bytes, 2 * memory_bytes))
    code = 0
    try:
        _run(Channel(control_fd), result_fd, setup_code, test_code, entry_point)
    except BaseException:
        code = 70
        try:
            _record(result_fd, "harness_error", message=traceback.format_exc()[-MAX_MESSAGE:])
        except OSError:
            pass
    os._exit(code)


def _run(channel: Channel, result_fd: int, setup_code: str, test_code: str, entry_point: str | None) -> None:
    first = channel.receive()
    kind = (first or {}).get("event")
    if kind != "ready":
        outcome = {"compile_error": "compile_error", "exception": "candidate_raised"}.get(
            str(kind), "candidate_gone"
        )
        _record(result_fd, outcome, event=_trim(first))
        return
    names, plain = first.get("callables"), first.get("values")
    if not isinstance(names, list) or not isinstance(plain, dict):
        _record(
            result_fd, "candidate_gone", event={"type": "ProtocolViolation", "message": "bad ready frame"}
        )
        return
    namespace: dict[str, Any] = {"__name__": "__tests__", "__builtins__": builtins}
    for name, encoded in plain.items():
        if _visible(name, entry_point):
            try:
                namespace[name] = values.decode(encoded)
            except (ValueError, TypeError, RecursionError):
                continue
    for name in names:
        if _visible(name, entry_point):
            namespace[name] = CandidateProxy(channel, name)
    register_source("<test setup>", setup_code)
    register_source("<tests>", test_code)
    try:
        exec(compile(setup_code, "<test setup>", "exec"), namespace)
        exec(compile(test_code, "<tests>", "exec"), namespace)
    except CandidateGone as gone:
        _record(result_fd, "candidate_gone", event=_trim(gone.event))
    except BaseException as exc:
        raised = channel.raised.get(id(exc))
        if raised is not None:  # the program's own exception, with its own traceback
            _record(result_fd, "candidate_raised", event=_trim(raised))
        else:
            detail = {"type": type(exc).__name__, "message": str(exc)[:MAX_MESSAGE]}
            detail["traceback"] = user_traceback(exc)[-MAX_MESSAGE:]
            _record(result_fd, "failed", event=detail)
    else:
        _record(result_fd, "passed")


BUILTIN_NAMES = frozenset(dir(builtins))


def _visible(name: object, entry_point: str | None) -> bool:
    """Which of the program's names the tests see. A program's ``abs = lambda x: 0`` must not
    replace the builtin the tests call: builtin names stay builtins (the entry point aside)."""
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        return False
    return name not in BUILTIN_NAMES or name == entry_point


def _trim(event: dict[str, Any] | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {
        key: (value[:MAX_MESSAGE] if isinstance(value, str) else value)
        for key, value in event.items()
        if key in ("event", "type", "message", "traceback", "code")
    }
