"""Liveness, readiness and metrics over HTTP, for compose and Kubernetes probes.

/livez    200 while the worker's loop keeps turning
/readyz   200 while Redis answers and the worker is not shutting down
/metrics  Prometheus text: programs by verdict, programs/s, recycles, retries, dead letters
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .worker import ExecutorWorker

STALL_S = 30.0


def prometheus_text(worker_id: str, metrics: dict[str, float]) -> str:
    lines = []
    for name, value in sorted(metrics.items()):
        if name.startswith("verdict_"):
            verdict = name.removeprefix("verdict_")
            lines.append(
                f'coderl_executor_programs_total{{worker="{worker_id}",verdict="{verdict}"}} {value:g}'
            )
        else:
            lines.append(f'coderl_executor_{name}{{worker="{worker_id}"}} {value:g}')
    return "\n".join(lines) + "\n"


class HealthServer:
    def __init__(self, worker: ExecutorWorker, port: int, host: str = "0.0.0.0") -> None:
        self.worker = worker
        handler = self._handler()
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="health", daemon=True)

    def start(self) -> HealthServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def live(self) -> bool:
        return time.monotonic() - self.worker.last_loop < STALL_S

    def ready(self) -> bool:
        return self.live() and self.worker.redis_ok and not self.worker.stopping.is_set()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/livez":
                    self._reply(200 if server.live() else 503, "live\n" if server.live() else "stalled\n")
                elif self.path == "/readyz":
                    self._reply(
                        200 if server.ready() else 503, "ready\n" if server.ready() else "not ready\n"
                    )
                elif self.path == "/metrics":
                    self._reply(200, prometheus_text(server.worker.config.worker_id, server.worker.metrics()))
                else:
                    self._reply(404, "not found\n")

            def _reply(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: object) -> None:  # probes are frequent; keep logs quiet
                return

        return Handler
