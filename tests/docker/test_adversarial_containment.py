"""Adversarial corpus B1-B10 (sandboxes.md section 4.B): containment, secrets and network.

Programs attack the harness's own processes, the network (Redis, the Docker host, metadata
services), the filesystem, the environment and the kernel. Survey programs print what they found
so a leak shows up in the verdict's error message ("expected 'clean', got ...").
"""

from __future__ import annotations

import pytest
from adversarial_corpus import ADD, SUM, SUM_OK

from coderl.outcomes import Verdict
from executor import ExecutionItem
from problems import Problem, TestCase

pytestmark = pytest.mark.docker

V = Verdict
ADD_ASSERT = Problem(
    task_id="add-assert", statement="", hidden_tests=[TestCase(kind="assert", code="assert add(1, 2) == 3")]
)


def expect(word: str, task: str = "survey") -> Problem:
    return Problem(
        task_id=task, statement="", hidden_tests=[TestCase(kind="stdio", stdin="", stdout=f"{word}\n")]
    )


# --- B1/B2: signals at the harness ----------------------------------------------------------------
KILLS = {"B1-parent": "os.kill(os.getppid(), 9)", "B2-everyone": "os.kill(-1, 9)", "B1-pid1": "os.kill(1, 9)"}
# A correct program that first sends the signal. "RE or normal": the verdict is the program's own
# (for assert tests, killing the test runner may also end as FAILED_TEST); never TIMEOUT or
# SANDBOX_ERROR.
MODES = {
    "stdio": (SUM, "import os\n{kill}\n" + SUM_OK, {V.PASSED, V.RUNTIME_ERROR}),
    "call": (ADD, "import os\n{kill}\ndef add(a, b):\n    return a + b\n", {V.PASSED, V.RUNTIME_ERROR}),
    "call-inside": (
        ADD,
        "import os\ndef add(a, b):\n    {kill}\n    return a + b\n",
        {V.PASSED, V.RUNTIME_ERROR},
    ),
    "assert": (
        ADD_ASSERT,
        "import os\n{kill}\ndef add(a, b):\n    return a + b\n",
        {V.PASSED, V.RUNTIME_ERROR, V.FAILED_TEST},
    ),
}


@pytest.mark.parametrize("mode", MODES, ids=MODES.keys())
@pytest.mark.parametrize("kill", KILLS.values(), ids=KILLS.keys())
def test_b1_b2_killing_the_harness(executor, kill, mode, still_serving):
    problem, template, allowed = MODES[mode]
    res = executor.execute(problem, template.format(kill=kill))
    assert res.verdict in allowed, res
    still_serving(executor)


def test_b2_kill_all_does_not_touch_other_sandboxes(executor):
    bomb = "import os, time\nfor _ in range(200):\n    os.kill(-1, 9)\n    time.sleep(0.005)\n" + SUM_OK
    items = [ExecutionItem(SUM, bomb if i % 3 == 0 else SUM_OK) for i in range(9)]
    results = executor.execute_many(items)
    innocent = [r.verdict for i, r in enumerate(results) if i % 3]
    assert innocent == [V.PASSED] * 6, results


# The program shares its UID with the harness's zygote (its parent): it can stop it, lower its
# priority or its resource limits. None of it may change the verdict of a later, innocent program.
ZYGOTE_TAMPERING = {
    "prlimit-nofile": "import os, resource as r\nr.prlimit(os.getppid(), r.RLIMIT_NOFILE, (64, 64))\n",
    "prlimit-as": "import os, resource as r\nr.prlimit(os.getppid(), r.RLIMIT_AS, (100 << 20, 100 << 20))\n",
    "prlimit-fsize": "import os, resource as r\nr.prlimit(os.getppid(), r.RLIMIT_FSIZE, (0, 0))\n",
    "renice": "import os\nos.setpriority(os.PRIO_PROCESS, os.getppid(), 19)\n",
    "sigstop": "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\n",
}
# Prints the answer only when this run starts like any other: nice 0, the configured limits.
INNOCENT = """\
import os, resource
a, b = map(int, input().split())
assert os.getpriority(os.PRIO_PROCESS, 0) == 0, 'niced'
assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] >= 1 << 20, 'fsize'
print(a + b)
"""


@pytest.mark.parametrize("attack", ZYGOTE_TAMPERING.values(), ids=ZYGOTE_TAMPERING.keys())
def test_b2_tampering_with_the_zygote_does_not_reach_later_jobs(make_executor, attack):
    # A private one-sandbox executor: the later jobs surely reuse the attacked sandbox, and a
    # poisoned sandbox cannot spill into the other tests.
    with make_executor(workers=1) as ex:
        res = ex.execute(SUM, attack + SUM_OK)
        later = [ex.execute(SUM, INNOCENT) for _ in range(3)]
    problems = (
        [f"attacker: {res.verdict} ({res.error})"] if res.verdict not in {V.PASSED, V.RUNTIME_ERROR} else []
    )
    for r in later:
        if r.verdict != V.PASSED or r.attempts != 1 or r.run_time_s > 2.0:
            problems.append(f"later job: {r.verdict} attempts={r.attempts} {r.run_time_s}s ({r.error})")
    assert not problems, problems


# --- B3/B4: network ------------------------------------------------------------------------------
CONNECT = "import socket\nsocket.create_connection(({host!r}, {port}), timeout=1).close()\nprint(3)\n"
NETWORK = {
    "B3-internet": CONNECT.format(host="1.1.1.1", port=80),
    "B3-internet-v6": CONNECT.format(host="2606:4700:4700::1111", port=80),
    "B3-dns": "import socket\nsocket.getaddrinfo('example.com', 80)\nprint(3)\n",
    "B3-urllib": "from urllib.request import urlopen\nurlopen('http://example.com/', timeout=1)\nprint(3)\n",
    "B3-udp": "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.sendto(b'x', ('8.8.8.8', 53))\nprint(3)\n",
    "B4-redis-gateway": CONNECT.format(host="172.17.0.1", port=6379),
    "B4-docker-api-gateway": CONNECT.format(host="172.17.0.1", port=2375),
    "B4-redis-loopback": CONNECT.format(host="127.0.0.1", port=6379),
    "B4-redis-loopback-v6": CONNECT.format(host="::1", port=6379),
    "B4-host-docker-internal": CONNECT.format(host="host.docker.internal", port=6379),
    "B4-metadata": CONNECT.format(host="169.254.169.254", port=80),
}


@pytest.mark.parametrize("program", NETWORK.values(), ids=NETWORK.keys())
def test_b3_b4_network_is_unreachable(executor, program):
    res = executor.execute(SUM, program)
    assert res.verdict == V.RUNTIME_ERROR, res
    assert res.error.type != "TimeoutError", f"a connect timed out instead of failing: {res.error}"


NETWORK_SURVEY = """\
import socket
found = []
for line in open('/proc/net/dev').read().splitlines()[2:]:
    found.append('if:' + line.split(':')[0].strip())
for host, port in [('172.17.0.1', 6379), ('127.0.0.1', 6379), ('169.254.169.254', 80), ('1.1.1.1', 443)]:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        found.append(f'open:{host}:{port}')
    except OSError:
        pass
routes = open('/proc/net/route').read().splitlines()[1:]
found += ['route:' + r.split()[0] for r in routes]
print(' '.join(found))
"""


def test_b3_only_loopback_exists(executor):
    res = executor.execute(expect("if:lo", "net-survey"), NETWORK_SURVEY)
    assert res.verdict == V.PASSED, res.error


# --- B5: read-only root ----------------------------------------------------------------------------
WRITES = {
    "root": "open('/pwned', 'w').write('x')\n",
    "etc": "open('/etc/passwd', 'a').write('evil::0:0::/:/bin/sh\\n')\n",
    "stdlib": "import glob\nopen(glob.glob('/usr/lib/python3*/')[0] + 'sitecustomize.py', 'w').write('x')\n",
    "harness": "open('/opt/coderl/harness/runner.py', 'a').write('x')\n",
    "harness-dir": "open('/opt/coderl/harness/evil.py', 'w').write('x')\n",
    "chmod": "import os\nos.chmod('/opt/coderl/harness', 0o777)\n",
}


@pytest.mark.parametrize("program", WRITES.values(), ids=WRITES.keys())
def test_b5_root_filesystem_is_read_only(executor, program):
    res = executor.execute(SUM, program + SUM_OK)
    assert res.verdict == V.RUNTIME_ERROR, res
    assert res.error.type in {"OSError", "PermissionError"}, res.error


# --- B6: secrets -----------------------------------------------------------------------------------
def test_b6_printing_the_environment_is_just_a_wrong_answer(executor):
    program = (
        "import os\nprint(dict(os.environ))\n"
        "for path in ('/proc/self/environ', '/proc/1/environ', '/proc/1/cmdline'):\n"
        "    try:\n        print(open(path, 'rb').read())\n    except OSError as exc:\n        print(exc)\n"
    )
    res = executor.execute(SUM, program)
    assert res.verdict == V.FAILED_TEST, res


SECRET_SURVEY = """\
import os
ALLOWED = {'PATH', 'HOME', 'LANG', 'LC_ALL', 'LC_CTYPE', 'HOSTNAME', 'PYTHONDONTWRITEBYTECODE',
           'PYTHONUNBUFFERED', 'OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS',
           'CODERL_PRELOAD_NUMPY', 'CODERL_WORKROOT'}
MARKERS = %r
blobs = {'os.environ': '\\n'.join(f'{k}={v}' for k, v in os.environ.items())}
extra = sorted(set(os.environ) - ALLOWED)
for pid in [n for n in os.listdir('/proc') if n.isdigit()] + ['self']:
    for what in ('environ', 'cmdline'):
        try:
            blobs[f'/proc/{pid}/{what}'] = open(f'/proc/{pid}/{what}', 'rb').read().decode('utf-8', 'replace')
        except OSError:
            pass
leaks = [f'{where}:{m}' for where, text in blobs.items() for m in MARKERS if m.lower() in text.lower()]
print('clean' if not leaks and not extra else f'leak:{leaks[:3]}:{extra[:5]}')
"""


def test_b6_no_secrets_in_reach(executor, canary_env):
    markers = [*canary_env, *canary_env.values(), "REDIS", "TOKEN", "SECRET", "PASSWORD", "API_KEY", "AWS_",
               "/work/", "tests/", "expected", "hidden"]  # fmt: skip
    res = executor.execute(expect("clean", "secrets"), SECRET_SURVEY % (markers,))
    assert res.verdict == V.PASSED, res.error


# --- B7: host sockets and credentials --------------------------------------------------------------
CREDENTIALS_SURVEY = """\
import glob, os
paths = ['/var/run/docker.sock', '/run/docker.sock', '/run/containerd/containerd.sock', '/run/secrets',
         '/var/run/secrets', os.path.expanduser('~/.aws'), '/root/.aws', '/root/.docker',
         os.path.expanduser('~/.cache/huggingface'), '/root/.cache/huggingface', '/.dockerenv.secrets',
         '/etc/coderl', '/work']
found = [p for p in paths if os.path.lexists(p)]
found += [p for d in ('/run', '/var/run', '/tmp', '/opt', '/home', '/root', '/srv', '/mnt')
          for p in glob.glob(d + '/**/*.sock', recursive=True)]
print('absent' if not found else f'found:{found[:5]}')
"""


def test_b7_no_host_sockets_or_credentials(executor):
    res = executor.execute(expect("absent", "credentials"), CREDENTIALS_SURVEY)
    assert res.verdict == V.PASSED, res.error


def test_b7_docker_socket_connect_fails(executor):
    program = (
        "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('/var/run/docker.sock')\nprint(3)\n"
    )
    res = executor.execute(SUM, program)
    assert res.verdict == V.RUNTIME_ERROR, res


# --- B8: state across runs -------------------------------------------------------------------------
PLANT = """\
import ctypes, os
for path in ('/tmp/b8-secret', '/dev/shm/b8-secret', 'b8-secret', '../b8-secret'):
    with open(path, 'w') as f:
        f.write('secret')
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
shmid = libc.shmget(0xC0DE, 4096, 0o1000 | 0o666)  # IPC_CREAT
if shmid >= 0:
    address = libc.shmat(shmid, None, 0)
    ctypes.memmove(address, b'secret', 6)
print('planted')
"""
# Run 2 prints what it found of run 1's state; the problem expects "secret", so a leak passes.
HARVEST = """\
import ctypes, glob, os
found = []
paths = ['/tmp/b8-secret', '/dev/shm/b8-secret', 'b8-secret', '../b8-secret'] + glob.glob('/tmp/*/b8-secret')
for path in paths:
    try:
        found.append(open(path).read())
    except OSError:
        pass
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
shmid = libc.shmget(0xC0DE, 0, 0)
if shmid >= 0:
    found.append(ctypes.string_at(libc.shmat(shmid, None, 0), 6).decode())
print(found[0] if found else 'nothing')
"""


def test_b8_no_state_survives_to_the_next_run(executor, on_every_sandbox):
    planted = on_every_sandbox(executor, expect("planted", "plant"), PLANT)
    assert [r.verdict for r in planted] == [V.PASSED] * len(planted), [r.error for r in planted]
    for problem in (expect("secret", "harvest-other-problem"), expect("secret", "plant")):
        harvested = on_every_sandbox(executor, problem, HARVEST)
        assert [r.verdict for r in harvested] == [V.FAILED_TEST] * len(harvested), [
            r.error for r in harvested
        ]
        assert all("nothing" in r.error.message for r in harvested), [r.error for r in harvested]


# --- B9: privileged kernel interfaces --------------------------------------------------------------
SYSCALL = """\
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(256)
rc = {call}
if rc == -1:
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
print('SUCCEEDED', rc)
"""
PRIVILEGED = {
    "ptrace-attach-zygote": "libc.ptrace(16, os.getppid(), 0, 0)",
    "ptrace-attach-pid1": "libc.ptrace(16, 1, 0, 0)",
    "unshare-user": "libc.unshare(0x10000000)",
    "unshare-mount": "libc.unshare(0x00020000)",
    "mount-tmpfs": "libc.mount(b'none', b'/mnt', b'tmpfs', 0, None)",
    "setuid-0": "libc.setuid(0)",
    "keyctl": "libc.syscall(250, 0, -3, 0, 0, 0)",
    "io_uring_setup": "libc.syscall(425, 8, buf)",
    "bpf": "libc.syscall(321, 0, buf, 48)",
    "perf_event_open": "libc.syscall(298, buf, 0, -1, -1, 0)",
}


@pytest.mark.parametrize("call", PRIVILEGED.values(), ids=PRIVILEGED.keys())
def test_b9_privileged_syscalls_fail(executor, call):
    res = executor.execute(SUM, SYSCALL.format(call=call))
    assert res.verdict == V.RUNTIME_ERROR, res
    assert res.error.type in {"OSError", "PermissionError"} and "not permitted" in res.error.message, (
        res.error
    )


LOCKDOWN_SURVEY = """\
import os
status = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines())
bad = [k for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb') if int(status[k], 16)]
bad += [] if status['NoNewPrivs'].strip() == '1' else ['NoNewPrivs']
bad += [] if status['Seccomp'].strip() == '2' else ['Seccomp']
bad += [] if os.getuid() != 0 and os.geteuid() != 0 else ['root']
print('locked' if not bad else f'open:{bad}')
"""


def test_b9_no_capabilities_no_new_privileges_seccomp(executor):
    res = executor.execute(expect("locked", "lockdown"), LOCKDOWN_SURVEY)
    assert res.verdict == V.PASSED, res.error


# --- B10: symlinks left for the worker -------------------------------------------------------------
SYMLINKS = """\
import os
os.symlink('/etc/passwd', 'out.txt')
os.symlink('/opt/coderl/harness', '/tmp/harness-link')
os.symlink('/opt/coderl/harness/server.py', '/dev/shm/server.py')
os.symlink('/', 'root-link')
os.symlink('/opt/coderl/harness/zygote.py', '/tmp/w999')  # a future working directory's name
os.mkdir('sub')
os.symlink('/opt/coderl/harness/runner.py', 'sub/runner.py')
os.mkfifo('/tmp/fifo')
print(3)
"""
# Directories the harness (same UID) must make writable again before it can empty them.
UNREMOVABLE = {
    "empty-dir-0000": "import os\nos.mkdir('locked')\nos.chmod('locked', 0)\nprint(3)\n",
    "nested-dir-0000": "import os\nos.makedirs('locked/inner')\nopen('locked/inner/f', 'w').write('x')\n"
    "os.symlink('/opt/coderl/harness/runner.py', 'locked/inner/runner.py')\nos.chmod('locked/inner', 0)\n"
    "os.chmod('locked', 0)\nprint(3)\n",
    "tmp-dir-0000": "import os\nos.makedirs('/tmp/locked/inner')\nos.chmod('/tmp/locked', 0)\nprint(3)\n",
    "shm-dir-0500": "import os\nos.makedirs('/dev/shm/ro/inner')\nos.chmod('/dev/shm/ro', 0o500)\nprint(3)\n",
    "cwd-0000": "import os\nos.mkdir('sub')\nos.chmod('.', 0)\nprint(3)\n",
}
INTACT = """\
import os, stat
ok = os.path.isfile('/etc/passwd') and os.path.getsize('/etc/passwd') > 0
for name in ('server.py', 'runner.py', 'zygote.py'):
    st = os.lstat('/opt/coderl/harness/' + name)
    ok = ok and stat.S_ISREG(st.st_mode) and st.st_uid == 0 and st.st_size > 0
ok = ok and stat.S_IMODE(os.stat('/opt/coderl/harness').st_mode) == 0o755
left = sorted(set(os.listdir('/tmp')) - {os.path.basename(os.getcwd())}) + os.listdir('/dev/shm')
print('intact' if ok and not left else f'damaged:{ok}:{left}')
"""


def test_b10_symlinks_are_never_followed_by_the_harness(executor, on_every_sandbox, still_serving):
    res = executor.execute(SUM, SYMLINKS)
    assert res.verdict in {V.PASSED, V.RUNTIME_ERROR}, res
    checks = on_every_sandbox(executor, expect("intact", "intact"), INTACT)
    assert [r.verdict for r in checks] == [V.PASSED] * len(checks), [r.error for r in checks]
    still_serving(executor)


@pytest.mark.parametrize("program", UNREMOVABLE.values(), ids=UNREMOVABLE.keys())
def test_b10_unremovable_entries_do_not_break_the_cleanup(executor, program, on_every_sandbox, still_serving):
    # A correct program that leaves a directory it made unreadable: its verdict is its own (never
    # SANDBOX_ERROR, which would mask it from training), and the next runs find a clean sandbox.
    res = executor.execute(SUM, program)
    assert res.verdict in {V.PASSED, V.RUNTIME_ERROR}, res
    checks = on_every_sandbox(executor, expect("intact", "intact"), INTACT)
    assert [r.verdict for r in checks] == [V.PASSED] * len(checks), [r.error for r in checks]
    still_serving(executor)
