"""Lambda's Runtime API for one execution environment, served on loopback.

awslambdaric (the runtime interface client that AWS's Python runtimes run) speaks to it as to
Lambda's own: it blocks on GET /2018-06-01/runtime/invocation/next until an invocation is
handed over, then POSTs .../invocation/{id}/response or .../invocation/{id}/error, and
.../init/error when the handler cannot even be loaded. What it asks and the headers it reads
are in awslambdaric/lambda_runtime_client.py (`wait_next_invocation`, `post_init_error`) and
the aws-lambda-cpp client it wraps (runtime_client.*.so): a keep-alive HTTP/1.1 connection,
bodies with a Content-Length, 200 for next and 202 for every POST.

Everything the runtime does arrives on `events`, in order, for the environment to wait on.
"""

from __future__ import annotations

import json
import queue
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

API = "/2018-06-01/runtime"
_POST_PATH = re.compile(
    rf"^{API}/(?:invocation/(?P<id>[^/]+)/(?P<kind>response|error)|init/error)$"
)

EventKind = Literal["next", "response", "error", "init_error", "exited"]


@dataclass(frozen=True)
class Invocation:
    """One event for the function, with the headers Lambda sends beside it."""

    request_id: str
    body: bytes
    deadline_ms: int  # epoch milliseconds, what context.get_remaining_time_in_millis counts to
    invoked_function_arn: str
    trace_id: str


@dataclass(frozen=True)
class RuntimeEvent:
    """What the runtime did: asked for work, answered, failed, or (reported by its owner) exited."""

    kind: EventKind
    request_id: str = ""
    body: bytes = b""


class RuntimeApi:
    """The server; `hand_over` queues an invocation for the runtime's next GET."""

    def __init__(self) -> None:
        self.events: queue.Queue[RuntimeEvent] = queue.Queue()
        self._invocations: queue.Queue[Invocation | None] = queue.Queue()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="lambda-runtime-api", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> str:
        """host:port, the value of AWS_LAMBDA_RUNTIME_API."""
        return f"127.0.0.1:{self._server.server_address[1]}"

    def hand_over(self, invocation: Invocation) -> None:
        self._invocations.put(invocation)

    def report(self, event: RuntimeEvent) -> None:
        self.events.put(event)

    def next_invocation(self) -> Invocation | None:
        """Blocks (in the runtime's request thread) until work or close(); None once closed."""
        return self._invocations.get()

    def close(self) -> None:
        self._invocations.put(None)  # frees a GET /next still waiting
        # shutdown() waits out serve_forever's 0.5 s poll: not on the invoke's time.
        threading.Thread(target=self._stop_serving, daemon=True).start()

    def _stop_serving(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a GET /next parked on an empty queue must not hold close()

    def __init__(self, api: RuntimeApi) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.api = api

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a runtime killed mid-call (a timeout, a teardown) resets its connection


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # the client keeps one connection for all its calls
    disable_nagle_algorithm = True  # else each small answer waits out a delayed ACK (~40 ms)
    server: _Server

    def do_GET(self) -> None:
        if self.path != f"{API}/invocation/next":
            self._answer(404, {"errorMessage": f"unknown path {self.path}"})
            return
        self.server.api.report(RuntimeEvent("next"))
        invocation = self.server.api.next_invocation()
        if invocation is None:
            self.close_connection = True
            self._answer(500, {"errorMessage": "the execution environment is shutting down"})
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Lambda-Runtime-Aws-Request-Id", invocation.request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(invocation.deadline_ms))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", invocation.invoked_function_arn)
        self.send_header("Lambda-Runtime-Trace-Id", invocation.trace_id)
        self.send_header("Content-Length", str(len(invocation.body)))
        self.end_headers()
        self.wfile.write(invocation.body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        match = _POST_PATH.match(self.path)
        if not match:
            self._answer(404, {"errorMessage": f"unknown path {self.path}"})
            return
        kind: EventKind = match["kind"] or "init_error"  # type: ignore[assignment]
        self.server.api.report(RuntimeEvent(kind, match["id"] or "", body))
        self._answer(202, {"status": "OK"})

    def _answer(self, status: int, doc: dict[str, str]) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per runtime call would bury the emulator's output
