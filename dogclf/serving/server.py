"""`dogclf serve`'s model server: the SageMaker container contract plus the runtime API path.

    GET  /ping                          200 once the model is loaded, 503 before
    POST /invocations                   the container contract; errors are 4xx JSON
    POST /endpoints/{name}/invocations  what boto3's sagemaker-runtime invoke_endpoint calls
                                        (AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME); the model's 4xx
                                        comes back as 424 ModelError, as from AWS
    GET  /execution-parameters          batch transform hints
    GET  /stats                         request, response and batch counters

uvicorn (httptools, one event loop on its own thread, uvloop where installed) serves the ASGI
app of asgi.py; decode threads parse and decode (Pillow and torch release the GIL), batcher
workers run the model (one on a GPU; on a CPU a few, each with its share of the cores:
worker_plan). A request that cannot be answered within serving.request_deadline_s is refused
at once with 503 and Retry-After (batching.py), so the accepted ones keep a bounded latency
under overload.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dogclf.errors import DogclfError
from dogclf.model import inference
from dogclf.serving.asgi import ServeConfig, ServingApp
from dogclf.serving.batch_tuning import BatchTuning, tune_batch_size
from dogclf.serving.batching import DynamicBatcher

if TYPE_CHECKING:
    import uvicorn

    from dogclf.config import ServingSection

MAX_CPU_WORKERS = 4
# SageMaker sends SIGKILL 30 s after SIGTERM: finish within that.
DRAIN_TIMEOUT_S = 25.0


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


@dataclass(frozen=True)
class Admission:
    """How much waiting the server accepts (serving.max_queue, serving.request_deadline_s)."""

    max_queue: int = 256
    deadline_s: float = 10.0


@dataclass(frozen=True)
class Timeouts:
    """Connection limits (asgi.py's docstring says why these values)."""

    keep_alive_s: float = 75.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0


@dataclass(frozen=True)
class Invocation:
    """One POST to /invocations: its body and headers, and when it must be answered by
    (time.monotonic())."""

    body: bytes
    content_type: str | None
    accept: str | None
    attributes: str | None  # X-Amzn-SageMaker-Custom-Attributes
    deadline: float


class InferenceService:
    """The model behind the server: parse -> decode (decode threads) -> batched forward."""

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
        admission: Admission | None = None,
    ) -> None:
        self.limits = limits
        self.max_batch_size = max_batch_size
        self.max_batch_wait_ms = max_batch_wait_ms
        self.precision = precision
        self.cpus = cpus or os.cpu_count() or 1
        self.admission = admission or Admission()
        self._plan = (workers, torch_threads)
        self.workers, self.torch_threads = 1, torch.get_num_threads()
        # Bounds concurrent decoding so 100 connections cannot starve the model of CPU.
        self._decoders = ThreadPoolExecutor(max(1, decode_threads), "dogclf-decode")
        self.classifier: inference.Classifier | None = None
        self.batcher: DynamicBatcher[torch.Tensor, torch.Tensor] | None = None
        self.tuning: BatchTuning | None = None
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
        # Warm up (the first pass of each batch shape builds its kernels: now, not on the
        # first user's request) and pick the batch size the workers run, timed as they run
        # it; its time per image seeds the batcher's estimate of waits (admission control).
        size = classifier.image_size
        blank = torch.zeros(3, size, size, dtype=torch.uint8)
        self.tuning = tune_batch_size(
            lambda n: classifier.probabilities([blank] * n), self.max_batch_size, self.workers
        )
        item_s = self.tuning.ms_per_image[self.tuning.batch_size] / 1000
        self.classifier = classifier
        self.batcher = DynamicBatcher(
            self._run_batch,
            max_batch_size=self.tuning.batch_size,
            max_wait_s=self.max_batch_wait_ms / 1000,
            workers=self.workers,
            max_queue=self.admission.max_queue,
            item_s=item_s,
        ).start()
        return classifier

    def _run_batch(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        assert self.classifier is not None
        return list(self.classifier.probabilities(tensors))

    def admit(self, count: int, deadline: float) -> None:
        """Raise batching.Refused (503) if `count` images could not be answered by
        `deadline`; checked again, with the real count, when the request is decoded."""
        assert self.batcher is not None
        self.batcher.admit(count, deadline)

    async def invoke(self, request: Invocation) -> tuple[bytes, str]:
        """One request -> (JSON body, content type); RequestError (4xx) for bad input,
        batching.Refused (503) when it could not be answered before its deadline."""
        assert self.classifier is not None and self.batcher is not None
        # Again now the body is in (the queue may have filled while it arrived): on the
        # loop, without the hop to a decode thread; the cores stay with the forward passes.
        self.admit(1, request.deadline)
        loop = asyncio.get_running_loop()
        parsed, tensors = await loop.run_in_executor(self._decoders, self._prepare, request)
        futures: list[Future[torch.Tensor]] = []
        try:
            for tensor in tensors:
                futures.append(self.batcher.submit(tensor, request.deadline))
        except BaseException:
            for future in futures:  # the queue filled up midway: none of them runs
                future.cancel()
            raise
        probs = torch.stack([await asyncio.wrap_future(f) for f in futures])
        with self._lock:
            self.images += len(tensors)
        predictions = self.classifier.top_k(probs, parsed.top_k)
        return inference.encode_response(
            inference.response_document(predictions, parsed.batched), request.accept
        )

    def _prepare(self, request: Invocation) -> tuple[inference.ParsedRequest, list[torch.Tensor]]:
        """On a decode thread: validate, ask the batcher for room, then decode."""
        assert self.classifier is not None and self.batcher is not None
        with self._lock:
            self.requests += 1
        try:
            inference.encode_response({}, request.accept)  # a bad Accept: before any work
            parsed = inference.parse_request(
                request.body, request.content_type, self.limits, request.attributes
            )
            if len(parsed.images) > self.admission.max_queue:  # could never be admitted
                raise inference.PayloadTooLargeError(
                    f"the request has {len(parsed.images)} images; this server queues at most "
                    f"{self.admission.max_queue} (serving.max_queue)"
                )
            self.admit(len(parsed.images), request.deadline)  # before decoding
            many = len(parsed.images) > 1
            tensors = [
                self.classifier.prepare(data, f"images[{i}]" if many else None)
                for i, data in enumerate(parsed.images)
            ]
        except inference.RequestError:
            with self._lock:
                self.client_errors += 1
            raise
        return parsed, tensors

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
            "admission": {
                "max_queue": self.admission.max_queue,
                "deadline_s": self.admission.deadline_s,
                "queued": self.batcher.queued if self.batcher else 0,
            },
            "batching": self.batcher.stats.as_dict() if self.batcher else None,
            "batch_tuning": {"max_batch_size": self.max_batch_size, **self.tuning.as_dict()}
            if self.tuning
            else None,
        }

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close(timeout=60)
        self._decoders.shutdown(wait=False, cancel_futures=True)


def _listen(host: str, port: int) -> socket.socket:
    """Bound and listening now, so the port is known (port 0) and /ping answers 503 while
    the model loads."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # a burst of clients must not find the accept queue full
    except OSError as exc:
        sock.close()
        raise DogclfError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            "pick another --port (0 = any free port), or stop what is using it",
        ) from None
    return sock


def _raise_open_files_limit() -> None:
    """Thousands of idle keep-alive connections need as many descriptors as the hard limit
    allows, not the usual soft 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class ModelServer:
    """Binds at once (so /ping answers 503 while the model loads; a clear error when the
    port is taken), serves on a thread once started."""

    def __init__(
        self,
        service: InferenceService,
        host: str,
        port: int,
        *,
        access_log: bool = False,
        timeouts: Timeouts | None = None,
    ) -> None:
        timeouts = timeouts or Timeouts()
        self.service = service
        self.host = host
        self.sock = _listen(host, port)
        self.port: int = self.sock.getsockname()[1]
        self.app = ServingApp(
            service, access_log=access_log, deadline_s=service.admission.deadline_s
        )
        _raise_open_files_limit()
        self.uvicorn = _uvicorn_server(self.app, timeouts)
        self._thread = threading.Thread(target=self._serve, name="dogclf-http", daemon=True)
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def in_flight(self) -> int:
        return self.app.in_flight

    def _serve(self) -> None:
        try:
            with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
                runner.run(self.uvicorn.serve(sockets=[self.sock]))
        except BaseException as exc:  # reported by start()/stop(), not lost on the thread
            self._failure = exc

    def start(self) -> ModelServer:
        self._thread.start()
        while not self.uvicorn.started and self._thread.is_alive():
            time.sleep(0.01)
        if not self.uvicorn.started:
            raise DogclfError(f"the HTTP server did not start: {self._failure}")
        return self

    def stop(self, drain_timeout: float = DRAIN_TIMEOUT_S) -> int:
        """Stop accepting, close idle connections, finish in-flight requests, stop the model
        threads. Returns the number of requests that did not finish within `drain_timeout`."""
        self.app.draining = True
        self.uvicorn.config.timeout_graceful_shutdown = max(1, round(drain_timeout))
        self.uvicorn.should_exit = True
        if self._thread.is_alive():
            self._thread.join()
        self.sock.close()
        unfinished = self.app.in_flight
        self.service.close()
        return unfinished


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop where it is installed (the `torch` install profile, not on Windows):
    the event loop's share of a core per request is about a quarter smaller than asyncio's
    (bench/serve_throughput.py), cores the forward passes need on 2 vCPUs. None: asyncio."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _uvicorn_server(app: ServingApp, timeouts: Timeouts) -> uvicorn.Server:
    import uvicorn

    config = ServeConfig(
        app,
        header_timeout_s=timeouts.header_timeout_s,
        body_timeout_s=timeouts.body_timeout_s,
        loop="none",  # ModelServer runs the loop it picks (event_loop_factory)
        lifespan="off",
        interface="asgi3",
        timeout_keep_alive=int(timeouts.keep_alive_s),
        timeout_graceful_shutdown=int(DRAIN_TIMEOUT_S),
        access_log=False,  # the app logs its own lines (errors always)
        log_config=None,
        log_level="warning",
        proxy_headers=False,
        server_header=False,
    )
    return uvicorn.Server(config)


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
    limits = inference.Limits.from_serving(serving)
    wait_ms = serving.max_batch_wait_ms if max_batch_wait_ms is None else max_batch_wait_ms
    return InferenceService(
        limits,
        max_batch_size=max_batch_size or serving.max_batch_size,
        max_batch_wait_ms=wait_ms,
        decode_threads=decode_threads or serving.decode_threads or os.cpu_count() or 1,
        workers=workers,
        torch_threads=torch_threads,
        precision=precision,
        admission=Admission(serving.max_queue, serving.request_deadline_s),
    )


def timeouts_from_config(serving: ServingSection) -> Timeouts:
    return Timeouts(serving.keep_alive_s, serving.header_timeout_s, serving.body_timeout_s)
