"""The harness protocol as code: every name that crosses between the host and the sandbox server,
or between the harness's own processes, defined once (stdlib only: it runs in the sandbox too).

Channels, all carrying wire.py frames (JSON objects) unless said otherwise:
  host -> server      a request: ``Op`` under ``RequestKey.OP``; a run request is a ``RunRequest``
  server -> host      the start frame and the ping reply (``InfoKey``), an error (``InfoKey.ERROR``)
                      or a run's result (``ResultKey``; its events and record as below)
  server -> zygote    a ``ZygoteRequest`` (SOCK_SEQPACKET, plain JSON, descriptors attached)
  zygote -> server    ready (``ZygoteReply.READY``), a spawned child's pid, a ``ChildExit``
  server -> candidate a ``CandidateJob``, then (call mode) one ``CallRequest``
  runner -> candidate ``CallRequest``s
  candidate -> either events: ``EventKey.EVENT`` holds an ``Event``
  server -> runner    a ``RunnerJob`` (the candidate's channel attached)
  runner -> server    a ``RunnerRecord``: the assert tests' ``Outcome``

Names are ``StrEnum`` members, so they are the strings on the wire (``Op.RUN == "run"``) and
compare equal to what a peer decoded. Readers of frames from a less trusted peer parse leniently:
a missing or mistyped field takes its default, it never raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# --- host <-> server ---------------------------------------------------------------------------


class Op(StrEnum):
    """What the host asks of the server (``RequestKey.OP``)."""

    RUN = "run"
    PING = "ping"
    EXIT = "exit"


class Mode(StrEnum):
    """How a program is tested: its stdout, one call's value, or assert tests calling it."""

    STDIO = "stdio"
    CALL = "call"
    ASSERT = "assert"


class RequestKey(StrEnum):
    """Keys of a request from the host; a run request's are those of ``RunRequest``."""

    OP = "op"
    ID = "id"
    MODE = "mode"
    PROGRAM = "program"
    PRELUDE = "prelude"
    LIMITS = "limits"
    STDIN = "stdin"
    FN_NAME = "fn_name"
    ARGS = "args"
    SETUP_CODE = "setup_code"
    TEST_CODE = "test_code"


class LimitKey(StrEnum):
    """Keys of a run request's limits (``RequestKey.LIMITS``)."""

    CPU_S = "cpu_s"
    WALL_S = "wall_s"
    MEMORY_BYTES = "memory_bytes"
    FILE_BYTES = "file_bytes"
    OPEN_FILES = "open_files"
    OUTPUT_BYTES = "output_bytes"
    STDERR_KEEP_BYTES = "stderr_keep_bytes"


@dataclass(frozen=True)
class JobLimits:
    """A job's limits; ``from_dict`` fills what the request leaves out."""

    cpu_s: float = 4.0
    wall_s: float = 9.0
    memory_bytes: int = 1 << 30
    file_bytes: int = 64 << 20
    open_files: int = 256
    output_bytes: int = 16 << 20
    stderr_keep_bytes: int = 64 << 10

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> JobLimits:
        data = data or {}
        cpu_s = float(data.get(LimitKey.CPU_S, cls.cpu_s))
        wall_s = float(data.get(LimitKey.WALL_S, 2 * cpu_s + 1))
        seconds = (LimitKey.CPU_S, LimitKey.WALL_S)
        sizes = {key.value: int(data[key]) for key in LimitKey if key in data and key not in seconds}
        return cls(cpu_s=cpu_s, wall_s=wall_s, **sizes)

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key.value) for key in LimitKey}


@dataclass(frozen=True)
class RunRequest:
    """A run request (without its ``op``): one program, one test. Expected outputs never enter it."""

    mode: str = Mode.STDIO  # a Mode, kept as sent: an unknown one is run and judged as it is
    program: str = ""
    limits: dict[str, Any] = field(default_factory=dict)
    prelude: str | None = None
    stdin: str | None = None
    fn_name: str | None = None
    args: list[Any] | None = None  # call mode: the arguments, in values.py's tagged encoding
    setup_code: str | None = None
    test_code: str | None = None
    id: Any = None

    def to_dict(self) -> dict[str, Any]:
        """The frame's keys; fields left None are left out."""
        values = {key: getattr(self, key.value) for key in RequestKey if key != RequestKey.OP}
        return {key: value for key, value in values.items() if value is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRequest:
        def text(key: RequestKey) -> str | None:
            return str(data[key]) if key in data else None

        fn_name, args = data.get(RequestKey.FN_NAME), data.get(RequestKey.ARGS)
        limits, prelude = data.get(RequestKey.LIMITS), data.get(RequestKey.PRELUDE)
        return cls(
            mode=str(data.get(RequestKey.MODE, Mode.STDIO)),
            program=str(data.get(RequestKey.PROGRAM, "")),
            limits=limits if isinstance(limits, dict) else {},
            prelude=str(prelude) if prelude else None,
            stdin=text(RequestKey.STDIN),
            fn_name=fn_name if isinstance(fn_name, str) else None,
            args=args if isinstance(args, list) else None,
            setup_code=text(RequestKey.SETUP_CODE),
            test_code=text(RequestKey.TEST_CODE),
            id=data.get(RequestKey.ID),
        )


class InfoKey(StrEnum):
    """Keys of the server's start frame and ping reply (``Server.describe``), and of an error."""

    READY = "ready"
    PONG = "pong"
    ERROR = "error"
    CONTAINED = "contained"
    UID_SEPARATED = "uid_separated"
    NON_DUMPABLE = "non_dumpable"
    ZYGOTE_ALIVE = "zygote_alive"
    PYTHON = "python"
    OOM_COUNTER = "oom_counter"
    CGROUP_CPU = "cgroup_cpu"
    CGROUP_TASKS = "cgroup_tasks"
    JOBS_RUN = "jobs_run"


REQUIRED_ISOLATION = (
    InfoKey.CONTAINED,
    InfoKey.UID_SEPARATED,
    InfoKey.NON_DUMPABLE,
    InfoKey.CGROUP_CPU,
    InfoKey.CGROUP_TASKS,
)
"""What a Docker sandbox must report true at start; without them its verdicts are not trustworthy."""


class ResultKey(StrEnum):
    """Keys of a run's result (``Job.result`` plus what ``Server.run`` adds)."""

    ID = "id"
    MODE = "mode"
    EXIT_CODE = "exit_code"
    SIGNAL = "signal"
    KILLED_FOR = "killed_for"
    STOP_REASON = "stop_reason"
    CPU_S = "cpu_s"
    WALL_S = "wall_s"
    MAX_RSS_KB = "max_rss_kb"
    STDOUT = "stdout"  # base64, cut at the output limit
    STDOUT_BYTES = "stdout_bytes"
    STDERR = "stderr"  # base64, its first bytes only
    STDERR_BYTES = "stderr_bytes"
    EVENTS = "events"  # the candidate's first events (``EventKey``)
    RECORD = "record"  # assert mode: the runner's record (``RecordKey``), None if it gave none
    KILL_ROUNDS = "kill_rounds"
    OOM_FIRST = "oom_first"  # memory ran out before a CPU or wall-clock kill
    PROTOCOL_VIOLATION = "protocol_violation"
    OOM_KILLED = "oom_killed"
    CONTAMINATION = "contamination"  # what the job left behind; any: the host replaces the sandbox


class KilledFor(StrEnum):
    """Which limit the server killed a job for (``ResultKey.KILLED_FOR``; None if none)."""

    CPU = "cpu"
    WALL = "wall"
    OUTPUT = "output"


class StopReason(StrEnum):
    """Why the server stopped waiting on a job (``ResultKey.STOP_REASON``); a kill's: its limit."""

    CPU = KilledFor.CPU.value
    WALL = KilledFor.WALL.value
    OUTPUT = KilledFor.OUTPUT.value
    EXITED = "exited"
    ANSWERED = "answered"
    TESTS_FINISHED = "tests finished"
    RUNNER_LOST = "runner lost"
    PROTOCOL_VIOLATION = "protocol violation"
    FINISHED = "finished"  # the loop ended otherwise (a harness error)


# --- candidate -> server / runner: events ------------------------------------------------------


class Event(StrEnum):
    """What a candidate reports on its control socket (``EventKey.EVENT``)."""

    COMPILE_ERROR = "compile_error"
    EXCEPTION = "exception"  # raised while the module ran
    READY = "ready"  # call modes: the module ran; calls may come
    RETURNED = "returned"
    RAISED = "raised"  # raised by a call
    EXITED = "exited"


TERMINAL_EVENTS = frozenset(Event) - {Event.READY}
"""After one of these, a call-mode job has its answer."""


class EventKey(StrEnum):
    EVENT = "event"
    TYPE = "type"  # an exception's type name
    BUILTIN = "builtin"  # whether that type is the builtin exception of that name
    MESSAGE = "message"
    TRACEBACK = "traceback"
    CODE = "code"  # exited: the exit code
    VALUE = "value"  # returned: the value, in values.py's tagged encoding
    CALLABLES = "callables"  # ready: the module's functions
    VALUES = "values"  # ready: its other module-level names


# --- server / runner -> candidate ----------------------------------------------------------------


class CallOp(StrEnum):
    CALL = "call"
    GET = "get"  # a module-level value, by name


@dataclass(frozen=True)
class CandidateJob:
    """The first frame a candidate reads: what to run."""

    mode: str
    program: str
    prelude: str | None
    module_name: str

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CandidateJob:
        return cls(
            mode=str(data.get("mode", "")),
            program=str(data.get("program", "")),
            prelude=str(data["prelude"]) if data.get("prelude") else None,
            module_name=str(data.get("module_name", "__main__")),
        )


@dataclass(frozen=True)
class CallRequest:
    op: CallOp
    name: str
    args: list[Any] | None = None  # encoded (values.py); None: no arguments
    kwargs: Any = None  # an encoded dict (values.py); None: no keyword arguments

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallRequest:
        op = CallOp.GET if data.get("op") == CallOp.GET else CallOp.CALL
        return cls(op, str(data.get("name")), data.get("args"), data.get("kwargs"))


# --- server <-> runner ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunnerJob:
    seq: int
    setup_code: str
    test_code: str
    entry_point: str | None
    memory_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return _plain(self, keep_none=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunnerJob:
        entry_point = data.get("entry_point")
        return cls(
            seq=int(data.get("seq") or 0),
            setup_code=str(data.get("setup_code", "")),
            test_code=str(data.get("test_code", "")),
            entry_point=entry_point if isinstance(entry_point, str) else None,
            memory_bytes=int(data.get("memory_bytes") or 0),
        )


class Outcome(StrEnum):
    """How an assert job's tests ended (``RecordKey.OUTCOME``)."""

    PASSED = "passed"
    FAILED = "failed"  # an assert or the test code failed
    CANDIDATE_RAISED = "candidate_raised"
    CANDIDATE_GONE = "candidate_gone"  # it exited, died or broke its channel before the end
    COMPILE_ERROR = "compile_error"
    HARNESS_ERROR = "harness_error"  # the runner itself failed: no verdict


class RecordKey(StrEnum):
    OUTCOME = "outcome"
    EVENT = "event"  # the candidate's event, or the failed test's error (``EventKey``)
    MESSAGE = "message"  # harness_error: what went wrong
    SEQ = "seq"  # the job it answers (``RunnerJob.seq``)


@dataclass(frozen=True)
class RunnerRecord:
    outcome: Outcome
    event: dict[str, Any] | None = None
    message: str | None = None
    seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        values = {key: getattr(self, key.value) for key in RecordKey}
        return {key: value for key, value in values.items() if value is not None}


# --- server <-> zygote ---------------------------------------------------------------------------


class ZygoteOp(StrEnum):
    RUN = "run"  # fork a candidate (4 descriptors attached: stdin, stdout, stderr, control)
    JANITOR = "janitor"  # fork a child under the program uid that runs cleanup.scrub


@dataclass(frozen=True)
class ZygoteRequest:
    op: ZygoteOp
    limits: dict[str, Any] | None = None
    workdir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ZygoteRequest:
        op = ZygoteOp.JANITOR if data.get("op") == ZygoteOp.JANITOR else ZygoteOp.RUN
        return cls(op, data.get("limits"), data.get("workdir"))


class ZygoteReply(StrEnum):
    """Keys of the zygote's messages: ready once, a spawned child's pid, a child's exit."""

    READY = "ready"
    PID = "pid"
    EXITED = "exited"


@dataclass(frozen=True)
class ChildExit:
    """A child of the zygote was reaped: its wait status and rusage."""

    pid: int
    status: int
    cpu_s: float
    max_rss_kb: int

    def to_dict(self) -> dict[str, Any]:
        return {ZygoteReply.EXITED: self.pid, **_plain(self, keep_none=True, skip=("pid",))}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChildExit | None:
        if ZygoteReply.EXITED not in data:
            return None
        return cls(int(data[ZygoteReply.EXITED]), data["status"], data["cpu_s"], data["max_rss_kb"])


def _plain(message: object, keep_none: bool = False, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A dataclass message as a frame: its fields are the keys (None ones left out unless kept)."""
    fields_ = message.__dataclass_fields__  # type: ignore[attr-defined]
    values = {name: getattr(message, name) for name in fields_ if name not in skip}
    return {name: value for name, value in values.items() if keep_none or value is not None}
