"""`dogclf serve MODEL`: the SageMaker container contract on :8080, with dynamic batching."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

import typer


class Precision(StrEnum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


class _StopBeforeReady(BaseException):
    """SIGTERM/SIGINT arrived while the model was still loading (a BaseException, like
    KeyboardInterrupt, so no `except Exception` on the loading path can swallow it)."""


class _Signals:
    """SIGTERM/SIGINT for one `serve` run. The handler only records the signal: taking a lock
    in a handler (Event.set does) can deadlock against the main thread holding it. While the
    model loads, it raises _StopBeforeReady to interrupt a download or a blocking read."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.loaded = False

    def __call__(self, signum: int, frame: object) -> None:
        self.received.append(signum)
        if not self.loaded:
            raise _StopBeforeReady

    @contextmanager
    def installed(self) -> Iterator[_Signals]:
        """The handlers for the run, the previous ones back afterwards (CliRunner tests)."""
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(
    ctx: typer.Context,
    model: str = typer.Argument(
        ...,
        metavar="MODEL",
        help="model.tar.gz, its extracted folder, s3://.../model.tar.gz, or `latest`.",
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (0.0.0.0 in a container)."
    ),
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="Port \\[default: serving.port, 8080]; 0 = any free."
    ),
    max_batch_size: int | None = typer.Option(
        None,
        "--max-batch-size",
        min=1,
        max=256,
        help="Images per forward pass \\[serving.max_batch_size].",
    ),
    max_batch_wait_ms: float | None = typer.Option(
        None,
        "--max-batch-wait-ms",
        min=0,
        max=1000,
        help="How long a batch waits for more requests \\[serving.max_batch_wait_ms].",
    ),
    decode_threads: int | None = typer.Option(
        None,
        "--decode-threads",
        min=1,
        help="Images decoded at once \\[serving.decode_threads, else CPU count].",
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        max=64,
        help="Forward passes run side by side \\[1 on a GPU; on a CPU one per core, up to 4].",
    ),
    torch_threads: int | None = typer.Option(
        None, "--torch-threads", min=1, help="Threads of one forward pass \\[CPUs / workers]."
    ),
    precision: Precision = typer.Option(
        Precision.auto,
        "--precision",
        help="auto: bf16 on a CPU with native bf16 (AVX512-BF16, AMX), else fp32.",
    ),
    access_log: bool = typer.Option(
        False, "--access-log", help="Log every request (errors are always logged)."
    ),
) -> None:
    """Serve a model over HTTP: GET /ping, POST /invocations, POST /endpoints/NAME/invocations.

    boto3's sagemaker-runtime client reaches it with AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:8080. Stops cleanly on SIGTERM/Ctrl-C, finishing the requests in flight.
    """
    import os
    import time

    from dogclf.commands.context import state
    from dogclf.errors import DogclfError, require_extra

    require_extra("torch", "torch", "serve")
    cfg = state(ctx).config()
    from dogclf import render
    from dogclf.aws.model_source import is_remote, open_model_dir
    from dogclf.model.artifact import load_errors, local_model_path

    if not is_remote(model):
        local_model_path(model)  # fail now, before binding the port

    from dogclf.model.inference import Limits
    from dogclf.serving.server import InferenceService, ModelServer

    s = cfg.serving
    limits = Limits(
        max_payload_bytes=int(s.max_payload_mb * 1024 * 1024),
        max_image_pixels=s.max_image_pixels,
        top_k=s.top_k,
        url_allow_hosts=tuple(h.lower() for h in s.url_allow_hosts),
    )
    service = InferenceService(
        limits,
        max_batch_size=max_batch_size or s.max_batch_size,
        max_batch_wait_ms=s.max_batch_wait_ms if max_batch_wait_ms is None else max_batch_wait_ms,
        decode_threads=decode_threads or s.decode_threads or os.cpu_count() or 1,
        workers=workers,
        torch_threads=torch_threads,
        precision=precision.value,
    )
    listen_port = s.port if port is None else port
    try:
        server = ModelServer(service, host, listen_port, access_log=access_log).start()
    except OSError as exc:
        raise DogclfError(
            f"cannot listen on {host}:{listen_port}: {exc.strerror}",
            "pick another --port (0 = any free port), or stop what is using it",
        ) from None

    stop = _Signals()
    with stop.installed():
        render.note(f"Listening on {server.url} (/ping answers 503 until the model is loaded)")
        try:
            with (
                open_model_dir(model, cfg) as model_dir,
                load_errors(model),
            ):
                classifier = service.load(model_dir)
            stop.loaded = True
        except _StopBeforeReady:
            server.stop(drain_timeout=0)
            render.note("Stopped before the model was loaded.")
            return
        except BaseException:
            server.stop(drain_timeout=0)
            raise

        # The one line a script waits for (stdout, flushed).
        render.out.print(
            f"Serving {model} ({classifier.arch}, {classifier.num_classes} classes, "
            f"{classifier.device.type} {classifier.precision}) on {server.url} "
            f"(max batch {service.max_batch_size}, wait {service.max_batch_wait_ms:g} ms, "
            f"{service.workers} worker(s) x {service.torch_threads} thread(s))",
            highlight=False,
            soft_wrap=True,
        )
        # Short sleeps, not a blocking wait: sleep returns when the signal arrives, and a
        # signal the kernel handed to another thread is still seen within half a second.
        while not stop.received:
            time.sleep(0.5)
        in_flight = server.httpd.in_flight
        render.note(f"Shutting down: finishing {in_flight} request(s) in flight...")
        unfinished = server.stop()
    if unfinished:
        raise DogclfError(f"{unfinished} request(s) did not finish within 30 s of the shutdown")
    render.note("Stopped.")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
