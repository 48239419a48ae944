"""`dogclf serve`'s HTTP server: the SageMaker container contract plus the runtime API path.

    GET  /ping                          200 once the model is loaded, 503 before
    POST /invocations                   the container contract; errors are 4xx JSON
    POST /endpoints/{name}/invocations  what boto3's sagemaker-runtime invoke_endpoint calls
                                        (AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME); the model's 4xx
                                        comes back as 424 ModelError, as from AWS
    GET  /execution-parameters          batch transform hints
    GET  /stats                         request and batch counters (benchmarks, debugging)

The standard library's ThreadingHTTPServer gives one thread per connection: request threads
parse and decode (Pillow and torch release the GIL), batcher workers run the model (one on a
GPU; on a CPU a few, each with its share of the cores: worker_plan).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import traceback
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import torch

from dogclf.errors import DogclfError
from dogclf.model import inference
from dogclf.serving.batching import DynamicBatcher

if TYPE_CHECKING:
    from dogclf.config import ServingSection

RUNTIME_PATH = re.compile(r"^/endpoints/([^/]+)/invocations$")
VARIANT = "AllTraffic"
# A body over the limit is read and dropped (keeping the connection usable) up to this
# multiple of the limit; beyond it the connection is closed instead.
DRAIN_FACTOR = 8
MAX_CPU_WORKERS = 4


def worker_plan(
    device: torch.device, cpus: int, workers: int | None = None, threads: int | None = None
) -> tuple[int, int]:
    """(model workers, torch threads per forward pass); None = chosen here.

    A GPU gets one worker. On a CPU, a few forward passes side by side, each on its share of
    the cores, beat one pass spread over all of them: no barrier waits between the threads
    of one pass, and a request thread decoding on a core delays one pass instead of
    stalling every core's share of it (bench/serve_throughput.py).
    """
    if device.type != "cpu":
        return workers or 1, threads or torch.get_num_threads()
    cpus = max(1, cpus)
    if workers is None:
        workers = max(1, cpus // threads) if threads else min(cpus, MAX_CPU_WORKERS)
    return workers, threads or max(1, cpus // workers)


class InferenceService:
    """The model behind the server: parse -> decode (caller's thread) -> batched forward."""

    def __init__(
        self,
        limits: inference.Limits,
        *,
        max_batch_size: int = 16,
        max_batch_wait_ms: float = 5.0,
        decode_threads: int = 2,
        workers: int | None = None,
        torch_threads: int | None = None,
        precision: str = "auto",
        cpus: int | None = None,
    ) -> None:
        self.limits = limits
        self.max_batch_size = max_batch_size
        self.max_batch_wait_ms = max_batch_wait_ms
        self.precision = precision
        self.cpus = cpus or os.cpu_count() or 1
        self._plan = (workers, torch_threads)
        self.workers, self.torch_threads = 1, torch.get_num_threads()
        # Bounds concurrent decoding so 100 connections cannot starve the model of CPU.
        self._decode_slots = threading.BoundedSemaphore(max(1, decode_threads))
        self.classifier: inference.Classifier | None = None
        self.batcher: DynamicBatcher[torch.Tensor, torch.Tensor] | None = None
        self.requests = 0
        self.images = 0
        self.client_errors = 0
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self.batcher is not None

    def load(self, model_dir: Path) -> inference.Classifier:
        classifier = inference.load_classifier(
            model_dir, limits=self.limits, precision=self.precision
        )
        self.workers, self.torch_threads = worker_plan(classifier.device, self.cpus, *self._plan)
        torch.set_num_threads(self.torch_threads)
        # Warm up: the first pass (and each new batch shape) builds kernels; do it now,
        # not on the first user's request.
        size = classifier.image_size
        for n in sorted({1, self.max_batch_size}):
            classifier.probabilities([torch.zeros(size, size, 3, dtype=torch.uint8)] * n)
        self.classifier = classifier
        self.batcher = DynamicBatcher(
            self._run_batch,
            max_batch_size=self.max_batch_size,
            max_wait_s=self.max_batch_wait_ms / 1000,
            workers=self.workers,
        ).start()
        return classifier

    def _run_batch(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        assert self.classifier is not None
        return list(self.classifier.probabilities(tensors))

    def invoke(
        self, body: bytes, content_type: str | None, accept: str | None, attributes: str | None
    ) -> tuple[bytes, str]:
        """One request -> (JSON body, content type); RequestError (4xx) for bad input."""
        assert self.classifier is not None and self.batcher is not None
        with self._lock:
            self.requests += 1
        try:
            inference.encode_response({}, accept)  # refuse a bad Accept before any work
            parsed = inference.parse_request(body, content_type, self.limits, attributes)
            many = len(parsed.images) > 1
            with self._decode_slots:
                tensors = [
                    self.classifier.prepare(data, f"images[{i}]" if many else None)
                    for i, data in enumerate(parsed.images)
                ]
        except inference.RequestError:
            with self._lock:
                self.client_errors += 1
            raise
        futures = [self.batcher.submit(t) for t in tensors]
        probs = torch.stack([f.result() for f in futures])
        with self._lock:
            self.images += len(tensors)
        predictions = self.classifier.top_k(probs, parsed.top_k)
        return inference.encode_response(
            inference.response_document(predictions, parsed.batched), accept
        )

    def stats(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "requests": self.requests,
            "images": self.images,
            "client_errors": self.client_errors,
            "model": {
                "precision": self.classifier.precision if self.classifier else None,
                "workers": self.workers,
                "torch_threads": self.torch_threads,
            },
            "batching": self.batcher.stats.as_dict() if self.batcher else None,
        }

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close(timeout=60)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not hold the exit
    request_queue_size = 1024  # the default 5 drops connections under a burst of clients
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], service: InferenceService, access_log: bool):
        self.service = service
        self.access_log = access_log
        self.draining = False
        self.in_flight = 0
        self._idle = threading.Condition()
        super().__init__(address, Handler)

    def begin_request(self) -> bool:
        with self._idle:
            if self.draining:
                return False
            self.in_flight += 1
            return True

    def end_request(self) -> None:
        with self._idle:
            self.in_flight -= 1
            self._idle.notify_all()

    def drain(self, timeout: float) -> int:
        """Refuse new requests, wait for those in flight; returns how many never finished."""
        with self._idle:
            self.draining = True
            self._idle.wait_for(lambda: self.in_flight == 0, timeout)
            return self.in_flight


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: boto3 and load generators reuse connections
    server_version = "dogclf-serve"
    disable_nagle_algorithm = True  # headers and body go out as two writes
    server: _HTTPServer

    # ------------------------------------------------------------ routing

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        service = self.server.service
        if path == "/ping":
            if service.ready and not self.server.draining:
                self._json(200, {"status": "ok"})
            else:
                state = "draining" if self.server.draining else "loading"
                self._json(503, {"status": state})
        elif path == "/execution-parameters":
            self._json(
                200,
                {
                    "MaxConcurrentTransforms": service.max_batch_size,
                    "BatchStrategy": "SINGLE_RECORD",
                    "MaxPayloadInMB": max(1, service.limits.max_payload_bytes // inference.MB),
                },
            )
        elif path == "/stats":
            self._json(200, {**service.stats(), "in_flight": self.server.in_flight})
        else:
            self._error(404, f"no such path: GET {path}", runtime=False)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        match = RUNTIME_PATH.match(path)
        if path != "/invocations" and not match:
            self._discard_body()
            self._error(404, f"no such path: POST {path}", runtime=False)
            return
        if not self.server.begin_request():
            self.close_connection = True
            self._error(503, "the server is shutting down", runtime=bool(match))
            return
        try:
            self._invocation(runtime=bool(match))
        finally:
            self.server.end_request()

    def _method_not_allowed(self) -> None:
        self._discard_body()
        self._error(405, f"{self.command} is not supported here", runtime=False)

    do_PUT = do_DELETE = do_PATCH = _method_not_allowed

    # ------------------------------------------------------------ invocations

    def _invocation(self, runtime: bool) -> None:
        service = self.server.service
        body = self._read_body(service.limits.max_payload_bytes, runtime)
        if body is None:
            return
        if not service.ready:
            self._error(503, "the model is still loading; retry when /ping answers 200", runtime)
            return
        attributes = self.headers.get("X-Amzn-SageMaker-Custom-Attributes")
        try:
            payload, content_type = service.invoke(
                body, self.headers.get("Content-Type"), self.headers.get("Accept"), attributes
            )
        except inference.RequestError as exc:
            self._error(exc.status, exc.message, runtime)
            return
        except Exception as exc:  # a bug, not bad input: say so, keep serving
            traceback.print_exc(file=sys.stderr)
            self._error(500, f"internal error: {type(exc).__name__}: {exc}", runtime)
            return
        headers = {}
        if attributes is not None:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = attributes
        if runtime:
            headers["x-Amzn-Invoked-Production-Variant"] = VARIANT
        self._send(200, payload, content_type, headers)

    def _read_body(self, limit: int, runtime: bool) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._error(
                411, "send the body with a Content-Length (chunked is not supported)", runtime
            )
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._error(400, "invalid Content-Length header", runtime)
            return None
        if length > limit:
            if length <= DRAIN_FACTOR * limit:
                self._discard(length)
            else:
                self.close_connection = True
            self._error(413, f"request body is {length:,} bytes; the limit is {limit:,}", runtime)
            return None
        body = self.rfile.read(length)
        if len(body) < length:  # the client went away mid-body
            self.close_connection = True
            return None
        return body

    def _discard_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        if 0 < length <= DRAIN_FACTOR * self.server.service.limits.max_payload_bytes:
            self._discard(length)
        elif length:
            self.close_connection = True

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                self.close_connection = True
                return
            length -= len(chunk)

    # ------------------------------------------------------------ responses

    def _error(self, status: int, message: str, runtime: bool) -> None:
        reason = HTTPStatus(status).phrase
        document = {"error": reason, "status": status, "message": message}
        body = json.dumps(document).encode()
        if not runtime:
            self._send(status, body, "application/json")
            return
        # What the SageMaker runtime answers when the container returned an error: 424
        # ModelError carrying the container's status and body (botocore raises ModelError).
        kind = "client" if status < 500 else "server"
        error = {
            "ErrorCode": "ModelError",
            "OriginalStatusCode": status,
            "OriginalMessage": body.decode(),
            "Message": f'Received {kind} error ({status}) from primary with message "{message}".',
        }
        self._send(
            424,
            json.dumps(error).encode(),
            "application/json",
            {"x-amzn-ErrorType": "ModelError"},
        )

    def _json(self, status: int, document: Any) -> None:
        self._send(status, json.dumps(document).encode(), "application/json")

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.server.access_log or (isinstance(code, int) and code >= 400):
            super().log_request(code, size)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} {self.address_string()} {format % args}\n")


class ModelServer:
    """Binds at once (so /ping answers 503 while the model loads), serves on a thread."""

    def __init__(
        self, service: InferenceService, host: str, port: int, *, access_log: bool = False
    ) -> None:
        self.service = service
        self.httpd = _HTTPServer((host, port), service, access_log)
        self.host = host
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="dogclf-http"
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> ModelServer:
        self._thread.start()
        return self

    def stop(self, drain_timeout: float = 30.0) -> int:
        """Stop accepting, finish in-flight requests, stop the model thread.

        Returns the number of requests that did not finish within `drain_timeout`.
        """
        if self._thread.is_alive():
            self.httpd.shutdown()  # the accept loop ends; the listening socket stays bound...
        self.httpd.server_close()  # ...until here, so new connections are refused now
        unfinished = self.httpd.drain(drain_timeout)
        self.service.close()
        return unfinished


def service_from_config(
    serving: ServingSection,
    *,
    max_batch_size: int | None = None,
    max_batch_wait_ms: float | None = None,
    decode_threads: int | None = None,
    workers: int | None = None,
    torch_threads: int | None = None,
    precision: str = "auto",
) -> InferenceService:
    """The service `dogclf serve` runs: `[serving]` of dogclf.toml, any value given here
    (a command-line option) in place of its key."""
    limits = inference.Limits(
        max_payload_bytes=int(serving.max_payload_mb * 1024 * 1024),
        max_image_pixels=serving.max_image_pixels,
        top_k=serving.top_k,
        url_allow_hosts=tuple(h.lower() for h in serving.url_allow_hosts),
    )
    wait_ms = serving.max_batch_wait_ms if max_batch_wait_ms is None else max_batch_wait_ms
    return InferenceService(
        limits,
        max_batch_size=max_batch_size or serving.max_batch_size,
        max_batch_wait_ms=wait_ms,
        decode_threads=decode_threads or serving.decode_threads or os.cpu_count() or 1,
        workers=workers,
        torch_threads=torch_threads,
        precision=precision,
    )


def start_server(
    service: InferenceService, host: str, port: int, *, access_log: bool = False
) -> ModelServer:
    """Bind and start serving (503 on /ping until `service.load`); a clear error when the
    port is taken."""
    try:
        return ModelServer(service, host, port, access_log=access_log).start()
    except OSError as exc:
        raise DogclfError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            "pick another --port (0 = any free port), or stop what is using it",
        ) from None
