"""``coderl worker`` (also ``python -m executor``, what the worker image runs): an executor service
worker. It reads execution requests from Redis streams, runs them in its sandboxes and publishes one
result per sample; ``coderl execute --redis-url URL`` and training runs send it work.

    coderl worker [--redis-url URL] [--workers N] [--health-port P] [--config FILE] [--set k=v ...]
    python -m executor health [--port P] [--path /readyz]     # exit 0 if healthy (for probes)

Config precedence: environment (CODERL_REDIS_URL, CODERL_REDIS_OUTAGE_S, CODERL_EXECUTOR_WORKERS,
CODERL_HEALTH_PORT, CODERL_WORKER_ID, CODERL_PREFIX, CODERL_RESTART_KILLED_SIBLINGS), then --config
FILE (WorkerConfig, executor/service_config.py), then --set, then the flags. A Redis unreachable for
longer than redis_outage_s, or one that refuses the password, ends the worker with one line and exit
code 3.
``coderl executor`` is a deprecated name of this command.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import urllib.request

from coderl.cli import CommandError
from coderl.cliconfig import CommandParser, add_config_options, load_command_config, redis_url
from coderl.config import ConfigError
from coderl.logs import setup_logging
from coderl.redis_client import RedisAuthError, RedisUnavailable

from .service_config import WorkerConfig

log = logging.getLogger("executor")
HELP = "serve execution requests from Redis streams (an executor service worker)"
DESCRIPTION = __doc__
ENV_OVERRIDES = {
    "CODERL_REDIS_URL": "redis_url",
    "CODERL_REDIS_OUTAGE_S": "redis_outage_s",
    "CODERL_EXECUTOR_WORKERS": "executor.workers",
    "CODERL_HEALTH_PORT": "health_port",
    "CODERL_WORKER_ID": "worker_id",
    "CODERL_PREFIX": "prefix",
    "CODERL_RESTART_KILLED_SIBLINGS": "restart_killed_siblings",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--redis-url",
        type=redis_url,
        metavar="redis://HOST:PORT[/DB]",
        help="Redis to serve (sets redis_url)",
    )
    add(
        "--workers",
        type=int,
        metavar="N",
        help="programs run in parallel, one sandbox each (sets executor.workers)",
    )
    add("--health-port", type=int, metavar="P", help="serve /livez /readyz /metrics here (sets health_port)")
    add(
        "--backend",
        choices=["docker", "process"],
        help="process is WEAKER: no container (sets executor.sandbox.backend)",
    )
    add_config_options(parser, WorkerConfig, "WorkerConfig", "executor.limits.timeout_s=2")


def resolve_config(args: argparse.Namespace) -> WorkerConfig:
    environment = [f"{key}={os.environ[env]}" for env, key in ENV_OVERRIDES.items() if os.environ.get(env)]
    flags = {
        "redis_url": args.redis_url,
        "executor.workers": args.workers,
        "health_port": args.health_port,
        "executor.sandbox.backend": args.backend,
    }
    with_environment = argparse.Namespace(**{**vars(args), "overrides": [*environment, *args.overrides]})
    return load_command_config(WorkerConfig, with_environment, flags)


def run(args: argparse.Namespace) -> int:
    from .health import HealthServer
    from .siblings import SiblingRestarter
    from .worker import ExecutorWorker

    config = resolve_config(args)
    worker = ExecutorWorker(config)
    health = HealthServer(worker, config.health_port).start() if config.health_port else None
    siblings = (
        SiblingRestarter.for_this_container(worker.counters) if config.restart_killed_siblings else None
    )
    if siblings is not None:
        siblings.start()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    try:
        worker.run()
    except (RedisUnavailable, RedisAuthError) as exc:  # one line each, the password redacted
        raise CommandError(str(exc), exit_code=3) from None
    finally:
        if siblings is not None:
            siblings.stop()
        if health is not None:
            health.stop()
    return 0


def probe(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["health"]:
        parser = argparse.ArgumentParser(prog="python -m executor health")
        parser.add_argument("--port", type=int, default=int(os.environ.get("CODERL_HEALTH_PORT") or 8080))
        parser.add_argument("--path", default="/readyz", choices=["/livez", "/readyz"])
        probe_args = parser.parse_args(argv[1:])
        return probe(probe_args.port, probe_args.path)
    parser = CommandParser(
        prog="python -m executor",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-level", default=os.environ.get("CODERL_LOG_LEVEL", "INFO"))
    add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        return run(args)
    except ConfigError as exc:
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return 2
    except CommandError as exc:
        sys.stderr.write(f"{parser.prog}: error: {exc}\n")
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
