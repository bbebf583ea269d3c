"""``python -m executor`` (alias ``coderl executor``): run an executor service worker.

    python -m executor [--redis-url URL] [--workers N] [--health-port P] [--config FILE] [--set k=v ...]
    python -m executor health [--port P] [--path /readyz]     # exit 0 if healthy (for probes)

Environment fallbacks: CODERL_REDIS_URL, CODERL_EXECUTOR_WORKERS, CODERL_HEALTH_PORT,
CODERL_WORKER_ID, CODERL_PREFIX.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import urllib.request

from coderl.config import load_config
from coderl.logs import setup_logging

from .service_config import WorkerConfig

log = logging.getLogger("executor")
HELP = "run an executor service worker: requests from Redis streams, results back"
ENV_OVERRIDES = {
    "CODERL_REDIS_URL": "redis_url",
    "CODERL_EXECUTOR_WORKERS": "executor.workers",
    "CODERL_HEALTH_PORT": "health_port",
    "CODERL_WORKER_ID": "worker_id",
    "CODERL_PREFIX": "prefix",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML or YAML file with WorkerConfig fields")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override config fields")
    parser.add_argument("--redis-url", help="e.g. redis://localhost:6379/0")
    parser.add_argument("--workers", type=int, help="programs executed in parallel (sandboxes)")
    parser.add_argument("--health-port", type=int, help="serve /livez /readyz /metrics here")
    parser.add_argument("--backend", choices=["docker", "process"], help="process is WEAKER (no container)")


def resolve_config(args: argparse.Namespace) -> WorkerConfig:
    overrides = [f"{field}={os.environ[env]}" for env, field in ENV_OVERRIDES.items() if os.environ.get(env)]
    overrides += list(args.set)
    for value, field in (
        (args.redis_url, "redis_url"),
        (args.workers, "executor.workers"),
        (args.health_port, "health_port"),
        (args.backend, "executor.sandbox.backend"),
    ):
        if value is not None:
            overrides.append(f"{field}={value}")
    return load_config(WorkerConfig, args.config, overrides)


def run(args: argparse.Namespace) -> int:
    from .health import HealthServer
    from .worker import ExecutorWorker

    config = resolve_config(args)
    worker = ExecutorWorker(config)
    health = HealthServer(worker, config.health_port).start() if config.health_port else None
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    try:
        worker.run()
    finally:
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
    parser = argparse.ArgumentParser(prog="python -m executor", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default=os.environ.get("CODERL_LOG_LEVEL", "INFO"))
    add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
