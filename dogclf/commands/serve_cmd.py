"""`dogclf serve MODEL`: the SageMaker container contract on :8080, with dynamic batching."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

import typer


class Precision(StrEnum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    int8 = "int8"


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
        if not self.loaded and len(self.received) == 1:  # a second Ctrl-C: already stopping
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


# The command's options, named once here so its signature reads as a list.
MODEL_ARGUMENT = typer.Argument(
    ...,
    metavar="MODEL",
    help="model.tar.gz, its extracted folder, s3://.../model.tar.gz, or `latest`.",
)
HOST_OPTION = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 in a container).")
PORT_OPTION = typer.Option(
    None, min=0, max=65535, help="Port \\[default: serving.port, 8080]; 0 = any free."
)
BATCH_OPTION = typer.Option(
    None, min=1, max=256, help="Images per forward pass \\[serving.max_batch_size]."
)
WAIT_HELP = "How long a batch waits for more requests \\[serving.max_batch_wait_ms]."
WAIT_OPTION = typer.Option(None, min=0, max=1000, help=WAIT_HELP)
DECODE_HELP = "Images decoded at once \\[serving.decode_threads, else CPU count]."
WORKERS_HELP = "Forward passes run side by side \\[1 on a GPU; on a CPU one per core, up to 4]."
ACCESS_LOG_HELP = "Log every request (errors are always logged)."
PRECISION_HELP = (
    "auto: int8 on an AVX2/VNNI CPU where the model marks it usable, bf16 on a CPU with "
    "native bf16 (AVX512-BF16, AMX), else fp32 \\[serving.precision]."
)


def serve(
    ctx: typer.Context,
    model: str = MODEL_ARGUMENT,
    host: str = HOST_OPTION,
    port: int | None = PORT_OPTION,
    max_batch_size: int | None = BATCH_OPTION,
    max_batch_wait_ms: float | None = WAIT_OPTION,
    decode_threads: int | None = typer.Option(None, min=1, help=DECODE_HELP),
    workers: int | None = typer.Option(None, min=1, max=64, help=WORKERS_HELP),
    torch_threads: int | None = typer.Option(
        None, min=1, help="Threads of one forward pass \\[CPUs / workers]."
    ),
    precision: Precision | None = typer.Option(None, help=PRECISION_HELP),
    access_log: bool = typer.Option(False, "--access-log", help=ACCESS_LOG_HELP),
) -> None:
    """Serve a model over HTTP: GET /ping, POST /invocations, POST /endpoints/NAME/invocations.

    boto3's sagemaker-runtime client reaches it with AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=http://127.0.0.1:8080. Stops cleanly on SIGTERM/Ctrl-C, finishing the requests in flight.
    """
    from dogclf.commands.context import state
    from dogclf.errors import require_extra

    require_extra("torch", "torch", "serve")
    cfg = state(ctx).config()
    from dogclf.aws.model_source import is_remote
    from dogclf.model.artifact import local_model_path
    from dogclf.serving.server import ModelServer, service_from_config, timeouts_from_config

    if not is_remote(model):
        local_model_path(model)  # fail now, before binding the port
    service = service_from_config(
        cfg.serving,
        max_batch_size=max_batch_size,
        max_batch_wait_ms=max_batch_wait_ms,
        decode_threads=decode_threads,
        workers=workers,
        torch_threads=torch_threads,
        precision=precision.value if precision is not None else cfg.serving.precision,
    )
    server = ModelServer(
        service,
        host,
        _listen_port(port, cfg.serving.port),
        access_log=access_log,
        timeouts=timeouts_from_config(cfg.serving),
    ).start()
    _serve_until_stopped(server, model, cfg)


def _listen_port(option: int | None, configured: int) -> int:
    """--port, else SAGEMAKER_BIND_TO_PORT (inference pipelines move the port), else config."""
    import os

    from dogclf.errors import DogclfError

    if option is not None:
        return option
    bound = os.environ.get("SAGEMAKER_BIND_TO_PORT", "").strip()
    if not bound:
        return configured
    if not bound.isdigit() or not 0 < int(bound) < 65536:
        raise DogclfError(
            f"SAGEMAKER_BIND_TO_PORT is {bound!r}, not a port", "set it to 1-65535 or unset it"
        )
    return int(bound)


def _serve_until_stopped(server: Any, model: str, cfg: Any) -> None:
    """Load the model behind the bound server, announce it, serve until SIGTERM/SIGINT."""
    import time

    from dogclf import render
    from dogclf.aws.model_source import open_model_dir
    from dogclf.errors import DogclfError
    from dogclf.model.artifact import load_errors

    service = server.service
    stop = _Signals()
    with stop.installed():
        try:
            # Inside the try: a script that reads this line may send SIGTERM before the
            # write returns, and the handler raises wherever the main thread is.
            render.note(f"Listening on {server.url} (/ping answers 503 until the model is loaded)")
            with open_model_dir(model, cfg) as model_dir, load_errors(model):
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
            f"(batches of up to {service.tuning.batch_size}, measured at load among sizes up "
            f"to {service.max_batch_size}; wait {service.max_batch_wait_ms:g} ms; "
            f"{service.workers} worker(s) x {service.torch_threads} thread(s))",
            highlight=False,
            soft_wrap=True,
        )
        # Short sleeps, not a blocking wait: sleep returns when the signal arrives, and a
        # signal the kernel handed to another thread is still seen within half a second.
        while not stop.received:
            time.sleep(0.5)
        render.note(f"Shutting down: finishing {server.in_flight} request(s) in flight...")
        unfinished = server.stop()
    if unfinished:
        raise DogclfError(f"{unfinished} request(s) did not finish within 25 s of the shutdown")
    render.note("Stopped.")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
