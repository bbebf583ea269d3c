"""The assert-test runner: runs MBPP/HumanEval-style test code in its own process and reaches
the candidate only through calls over the candidate's control socket.

It is long-lived: the server forks it once and hands it one job at a time (test code plus the
candidate's channel, passed as a file descriptor); the server replaces it after a job it did not
finish cleanly, and every ``MAX_JOBS`` jobs.

Guarantees: test code, its expected values and its builtins live in this process, which runs
under the harness's uid with no capability, non-dumpable, so the candidate (another uid) can
neither read, patch, signal nor prlimit it; every value coming back from the candidate is plain
data decoded by values.decode, so a forged ``__eq__``, shadowed builtins, patched modules or frame
walking in the candidate cannot make an assert pass. Each job's tests run in a fresh namespace;
the verdict record goes back to the server on a socket the candidate does not hold. Not
guaranteed: test code that needs candidate objects other than functions and plain data (classes,
instances) gets a NameError or an opaque value and fails; test code itself is trusted (a test that
changes interpreter-wide state would see it in later jobs of the same runner).
"""

from __future__ import annotations

import builtins
import os
import resource
import socket
import traceback
from typing import Any, NoReturn

from . import privileges, sysutil, values, wire
from .candidate import register_source, user_traceback
from .protocol import CallOp, CallRequest, Event, EventKey, Outcome, RunnerJob, RunnerRecord

MAX_MESSAGE = 2000
MAX_JOBS = 500
TRIMMED_KEYS = (EventKey.EVENT, EventKey.TYPE, EventKey.MESSAGE, EventKey.TRACEBACK, EventKey.CODE)
"""what of a candidate's event a record keeps"""


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
            return wire.read_frame(self.fd, strict=False)  # stays in the sandbox: see decode_body
        except (OSError, wire.FrameError):
            return None

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        budget = values.Budget()
        encoded_args, encoded_kwargs = values.encode(list(args), 0, budget), values.encode(kwargs, 0, budget)
        if budget.unsupported:
            raise TypeError(f"test passes a non-data argument to {name}(); only plain data can cross")
        return self._request(CallRequest(CallOp.CALL, name, encoded_args, encoded_kwargs))

    def get(self, name: str) -> Any:
        return self._request(CallRequest(CallOp.GET, name))

    def _request(self, message: CallRequest) -> Any:
        try:
            wire.write_frame(self.fd, message.to_dict())
        except OSError:
            raise CandidateGone(None) from None
        event = self.receive()
        kind = None if event is None else event.get(EventKey.EVENT)
        if event is None or kind == Event.EXITED:
            raise CandidateGone(event)
        if kind == Event.RETURNED:
            return values.decode(event.get(EventKey.VALUE))
        if kind == Event.RAISED:
            error = self._exception(event)
            self.raised[id(error)] = event
            raise error
        raise CandidateGone(event)

    @staticmethod
    def _exception(event: dict[str, Any]) -> BaseException:
        message = str(event.get(EventKey.MESSAGE, ""))[:MAX_MESSAGE]
        name = event.get(EventKey.TYPE)
        kind = getattr(builtins, str(name), None) if event.get(EventKey.BUILTIN) else None
        if isinstance(kind, type) and issubclass(kind, Exception):
            try:
                return kind(message)
            except Exception:
                pass
        return CandidateError(f"{name}: {message}")


class TestNamespace(dict):  # type: ignore[type-arg]
    """Globals of the test code: the program's functions as proxies, its other module-level
    values fetched from it the first time a test reads them."""

    def __init__(self, channel: Channel, lazy: set[str]) -> None:
        super().__init__(__name__="__tests__", __builtins__=builtins)
        self._channel, self._lazy = channel, lazy

    def __missing__(self, name: str) -> Any:
        if name not in self._lazy:
            raise KeyError(name)
        self._lazy.discard(name)
        value = self._channel.get(name)
        self[name] = value
        return value


def serve(job_fd: int) -> NoReturn:
    """The runner process: one job per frame on ``job_fd`` (its candidate channel arrives as a
    passed descriptor), one record frame back per job; exits when the server closes the socket."""
    sysutil.make_non_dumpable()
    sysutil.ignore_harness_signals()
    privileges.drop_all()
    sock = socket.socket(fileno=job_fd)
    while True:  # the server replaces it every MAX_JOBS jobs
        job, channel_fd = _receive_job(sock)
        if job is None or channel_fd is None:
            break
        try:
            record = run_job(job, channel_fd)
        finally:
            os.close(channel_fd)
        sock.sendall(wire.encode_frame(record.to_dict()))
    os._exit(0)


def _receive_job(sock: socket.socket) -> tuple[RunnerJob | None, int | None]:
    data, fds, _, _ = socket.recv_fds(sock, wire.HEADER.size, 1)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, None
    frame = wire.read_frame_after(sock.fileno(), data)
    return RunnerJob.from_dict(frame), (fds[0] if fds else None)


def run_job(job: RunnerJob, channel_fd: int) -> RunnerRecord:
    """Run one job's tests against the candidate on ``channel_fd``; the verdict record."""
    memory = job.memory_bytes
    if memory > 0:  # values decoded from the program are bounded by its own limit, twice over
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = 2 * memory if hard == resource.RLIM_INFINITY else min(2 * memory, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    try:
        outcome, event = _run(Channel(channel_fd), job.setup_code, job.test_code, job.entry_point)
        return RunnerRecord(outcome, event=event, seq=job.seq)
    except BaseException:
        message = traceback.format_exc()[-MAX_MESSAGE:]
        return RunnerRecord(Outcome.HARNESS_ERROR, message=message, seq=job.seq)


# How the tests end when the candidate's first event is not ready.
_NOT_READY = {Event.COMPILE_ERROR: Outcome.COMPILE_ERROR, Event.EXCEPTION: Outcome.CANDIDATE_RAISED}


def _run(
    channel: Channel, setup_code: str, test_code: str, entry_point: str | None
) -> tuple[Outcome, dict[str, Any] | None]:
    """The tests' outcome, and the candidate's event or the test code's error that decided it."""
    first = channel.receive()
    kind = (first or {}).get(EventKey.EVENT)
    if first is None or kind != Event.READY:
        return _NOT_READY.get(str(kind), Outcome.CANDIDATE_GONE), _trim(first)
    names, lazy = first.get(EventKey.CALLABLES), first.get(EventKey.VALUES)
    if not isinstance(names, list) or not isinstance(lazy, list):
        bad = {EventKey.TYPE: "ProtocolViolation", EventKey.MESSAGE: "bad ready frame"}
        return Outcome.CANDIDATE_GONE, bad
    namespace = TestNamespace(channel, {name for name in lazy if _visible(name, entry_point)})
    for name in names:
        if _visible(name, entry_point):
            namespace[name] = CandidateProxy(channel, name)
    register_source("<test setup>", setup_code)
    register_source("<tests>", test_code)
    try:
        exec(compile(setup_code, "<test setup>", "exec"), namespace)
        exec(compile(test_code, "<tests>", "exec"), namespace)
    except CandidateGone as gone:
        return Outcome.CANDIDATE_GONE, _trim(gone.event)
    except BaseException as exc:
        raised = channel.raised.get(id(exc))
        if raised is not None:  # the program's own exception, with its own traceback
            return Outcome.CANDIDATE_RAISED, _trim(raised)
        detail = {
            EventKey.TYPE: type(exc).__name__,
            EventKey.MESSAGE: _safe_str(exc)[:MAX_MESSAGE],
            EventKey.TRACEBACK: user_traceback(exc)[-MAX_MESSAGE:],
        }
        return Outcome.FAILED, detail
    return Outcome.PASSED, None


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except BaseException:
        return "<unprintable>"


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
        if key in TRIMMED_KEYS
    }
