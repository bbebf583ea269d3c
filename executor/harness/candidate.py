"""The candidate process: forked from the zygote, it runs one untrusted program.

Channels (set up before any candidate code runs): fd 0 stdin, fd 1 stdout, fd 2 stderr (pipes
read by the server), fd 3 a control socket. The first frame on fd 3 is the job (a
protocol.CandidateJob); afterwards fd 3 carries events (protocol.Event) to the server or runner
and, in the call-serving modes, call requests (protocol.CallRequest) from them.

Nothing the candidate writes on fd 3 is trusted: it can only describe its own answer. Expected
outputs and test code never enter this process.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import linecache
import math
import os
import resource
import sys
import traceback
import types
from typing import Any, NoReturn

from . import privileges, values, wire
from .protocol import CallOp, CallRequest, CandidateJob, Event, EventKey, JobLimits, Mode

CONTROL_FD = 3
MAX_MESSAGE = 4000
_BUILTIN_EXCEPTIONS = {
    name for name, obj in vars(builtins).items() if isinstance(obj, type) and issubclass(obj, BaseException)
}


def start(limits: dict[str, Any], fds: list[int], workdir: str, separated: bool) -> NoReturn:
    """Entry point in the freshly forked child. Never returns."""
    code = 70
    try:
        if separated:
            privileges.become_program()
        else:  # the process backend: the file may not be ours to write
            with contextlib.suppress(OSError):
                privileges.raise_oom_score()
        _isolate(JobLimits.from_dict(limits), fds, workdir)
        job = wire.read_frame(CONTROL_FD, strict=False) or {}  # from the server
        code = _run(CandidateJob.from_dict(job))
    except BaseException:
        try:
            os.write(2, traceback.format_exc().encode("utf-8", "replace"))
        except OSError:
            pass
    finally:
        _flush_std_streams()
        os._exit(code)


def prepare_interpreter(workdir: str) -> None:
    """In the zygote, once: the environment, argv and standard streams every program starts
    with. The streams wrap descriptors 0, 1 and 2, which each child points at its own pipes, so
    children reuse these objects instead of building them (each object a forked child builds or
    touches costs it copy-on-write page faults)."""
    os.environ.clear()
    os.environ.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8"})
    sys.argv = ["solution.py"]
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(
        io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8", errors="surrogateescape"
    )
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False), 1 << 16), encoding="utf-8", errors="strict"
    )
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )


def _isolate(limits: JobLimits, fds: list[int], workdir: str) -> None:
    os.setsid()
    for target, source in enumerate(fds):
        os.dup2(source, target)
    os.closerange(len(fds), 1 << 16)
    os.chdir(workdir)
    os.umask(0o077)
    cpu = max(1, math.ceil(limits.cpu_s))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    if limits.memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def send(event: dict[str, Any]) -> None:
    try:
        wire.write_frame(CONTROL_FD, event)
    except OSError:
        pass


HARNESS_DIR = os.path.dirname(os.path.abspath(__file__))


def register_source(filename: str, source: str) -> None:
    """Let tracebacks show the lines of in-memory sources (the program, the tests)."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)


def user_traceback(exc: BaseException) -> str:
    """The traceback without the harness's own frames: what a repair model should see."""
    try:
        report = traceback.TracebackException.from_exception(exc)
        for part in [report, *_chained(report)]:
            kept = [frame for frame in part.stack if not frame.filename.startswith(HARNESS_DIR)]
            part.stack = traceback.StackSummary.from_list(kept)
        return "".join(report.format())
    except BaseException:
        return ""


def _chained(report: traceback.TracebackException) -> list[traceback.TracebackException]:
    found, current = [], report
    while current is not None and len(found) < 10:
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        if current is not None:
            found.append(current)
    return found


def _describe(exc: BaseException) -> dict[str, Any]:
    name = values._type_name(type(exc))
    try:
        message = str(exc)
    except BaseException:
        message = "<unprintable>"
    trace = user_traceback(exc)
    return {
        EventKey.TYPE: name,
        EventKey.BUILTIN: name in _BUILTIN_EXCEPTIONS and type(exc) is getattr(builtins, name, None),
        EventKey.MESSAGE: message[:MAX_MESSAGE],
        EventKey.TRACEBACK: trace[-MAX_MESSAGE:],
    }


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if type(exc.code) is int:
        return exc.code & 0xFF
    try:
        sys.stderr.write(f"{exc.code}\n")
    except BaseException:
        pass
    return 1


def _run(job: CandidateJob) -> int:
    program = job.program
    register_source("solution.py", program)
    try:
        compiled = compile(program, "solution.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
        send({EventKey.EVENT: Event.COMPILE_ERROR, **_describe(exc)})
        return 0
    module = types.ModuleType(job.module_name)
    module.__file__ = "solution.py"
    module.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        if job.prelude:
            exec(compile(job.prelude, "<prelude>", "exec"), module.__dict__)
        exec(compiled, module.__dict__)
    except SystemExit as exc:
        code = _exit_code(exc)
        send({EventKey.EVENT: Event.EXITED, EventKey.CODE: code})
        return code
    except BaseException as exc:
        _flush_std_streams()
        details = _describe(exc)
        try:
            sys.stderr.write(details[EventKey.TRACEBACK])
        except BaseException:
            pass
        send({EventKey.EVENT: Event.EXCEPTION, **details})
        return 1
    if job.mode == Mode.STDIO:
        return 0
    _flush_std_streams()
    send({EventKey.EVENT: Event.READY, **_namespace_summary(module.__dict__)})
    return _serve(module.__dict__)


def _namespace_summary(namespace: dict[str, Any]) -> dict[str, Any]:
    """The names the tests may use: functions (called through the channel) and values (fetched
    only if a test reads them, so a huge or unencodable module-level table costs nothing)."""
    callables, plain = [], []
    for name, value in list(namespace.items()):
        if name.startswith("__") or isinstance(value, types.ModuleType):
            continue
        (callables if callable(value) else plain).append(name)
    return {EventKey.CALLABLES: callables, EventKey.VALUES: plain}


def _resolve(namespace: dict[str, Any], name: str) -> Any:
    target = namespace.get(name)
    solution = namespace.get("Solution")
    if (target is None or not callable(target)) and isinstance(solution, type) and hasattr(solution, name):
        return getattr(solution(), name)  # LeetCode style: a fresh Solution() per call
    if target is None:
        raise NameError(f"name {name!r} is not defined")
    return target


def _serve(namespace: dict[str, Any]) -> int:
    while True:
        frame = wire.read_frame(CONTROL_FD, strict=False)  # from the runner or the server
        if frame is None:
            return 0
        request = CallRequest.from_dict(frame)
        try:
            if request.op == CallOp.GET:
                result = _value(namespace, request.name)
            else:
                target = _resolve(namespace, request.name)
                args = values.decode(request.args) if request.args is not None else []
                kwargs = values.decode(request.kwargs) if request.kwargs is not None else {}
                result = target(*args, **kwargs)
        except SystemExit as exc:
            code = _exit_code(exc)
            _flush_std_streams()
            send({EventKey.EVENT: Event.EXITED, EventKey.CODE: code})
            return code
        except BaseException as exc:
            send({EventKey.EVENT: Event.RAISED, **_describe(exc)})
            continue
        try:
            encoded = values.encode(result)
        except (ValueError, RecursionError, MemoryError) as exc:
            encoded = values.unsupported(f"value ({exc})"[:100])
        _flush_std_streams()
        send({EventKey.EVENT: Event.RETURNED, EventKey.VALUE: encoded})


def _value(namespace: dict[str, Any], name: str) -> Any:
    if name.startswith("__") or name not in namespace:
        raise NameError(f"name {name!r} is not defined")
    return namespace[name]
