"""The SageMaker PyTorch inference image's request path, minus TorchServe (which needs Java).

STANDALONE SCRIPT: `serve_process.start_pytorch_inference` runs this file in a child process,
as the image's model server would run its worker: AWS's handler service
(`sagemaker_pytorch_serving_container.handler_service.HandlerService`) is initialised once
with TorchServe's context object (model_dir, gpu_id), then every request goes through its
`handle([{"body": bytes}], context)`, status, phrase and content type read back from the
context. As many workers as the image's TorchServe would start (worker_count:
SAGEMAKER_MODEL_SERVER_WORKERS and the rest), each on OMP_NUM_THREADS torch threads, so the
rehearsal runs the size `dogclf deploy` sets. A small stdlib HTTP server in front speaks
what TorchServe's frontend and the SageMaker runtime would:

    GET  /ping                          200 {"status": "Healthy"} once the model is loaded
    POST /invocations                   the container contract; the handler service's answer
                                        as is (errors: plain text, message + traceback)
    POST /endpoints/{name}/invocations  what boto3's invoke_endpoint calls; a non-2xx from
                                        the container becomes AWS's 424 ModelError

The image has no dogclf installed, so neither has this process: importing it is refused
(code/inference.py then loads its siblings from code/), and this file imports only the
standard library and AWS's toolkits.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.metadata
import json
import os
import queue
import re
import signal
import sys
import threading
import traceback
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

RUNTIME_PATH = re.compile(r"^/endpoints/([^/]+)/invocations$")
# TorchServe's default max_request_size (docs/configuration.md); the image does not change it.
MAX_REQUEST_SIZE = 6553500
VARIANT = "AllTraffic"
PACKAGE = "sagemaker-pytorch-inference"


class _NoDogclf(importlib.abc.MetaPathFinder):
    """The inference image has no dogclf: any import of it fails, whatever is installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".")[0] == "dogclf":
            raise ModuleNotFoundError(f"No module named {name!r} (not in the image)", name=name)
        return None


# ---------------------------------------------------------------- TorchServe's context


class RequestProcessor:
    """ts/context.py RequestProcessor: one request's headers in, its status and headers out."""

    def __init__(self, request_header: dict[str, Any]) -> None:
        self._status_code = 200
        self._reason_phrase: str | None = None
        self._response_header: dict[str, str] = {}
        self._request_header = request_header

    def get_request_property(self, key: str) -> Any:
        return self._request_header.get(key)

    def get_request_properties(self) -> dict[str, Any]:
        return self._request_header

    def report_status(self, code: int, reason_phrase: str | None = None) -> None:
        self._status_code = code
        self._reason_phrase = reason_phrase

    def get_response_status_code(self) -> int:
        return self._status_code

    def get_response_status_phrase(self) -> str | None:
        return self._reason_phrase

    def add_response_property(self, key: str, value: str) -> None:
        self._response_header[key] = value

    def get_response_headers(self) -> dict[str, str]:
        return self._response_header


class Context:
    """ts/context.py Context, the parts the handler service uses: system_properties at
    initialize, then per request the request processors (headers in, status/type out).
    TorchServe keeps one per worker and swaps request_processor for each batch
    (ts/service.py predict); the Transformer holds on to it, and passes it to input_fn."""

    def __init__(self, model_dir: str, gpu_id: int | None, server_version: str) -> None:
        self.model_name = "model"
        self.manifest: dict[str, Any] = {"model": {"modelName": "model"}}
        self._system_properties = {
            "model_dir": model_dir,
            "gpu_id": gpu_id,
            "batch_size": 1,
            "server_name": "MMS",
            "server_version": server_version,
            "limit_max_image_pixels": True,
        }
        self.request_ids: dict[int, str] | None = None
        self.request_processor: list[RequestProcessor] | None = None
        self.metrics = None

    @property
    def system_properties(self) -> dict[str, Any]:
        return self._system_properties

    def _processor(self, idx: int) -> RequestProcessor:
        assert self.request_processor is not None
        return self.request_processor[idx]

    def get_request_id(self, idx: int = 0) -> str | None:
        return None if self.request_ids is None else self.request_ids.get(idx)

    def get_request_header(self, idx: int, key: str) -> Any:
        return self._processor(idx).get_request_property(key)

    def get_all_request_header(self, idx: int) -> dict[str, Any]:
        return self._processor(idx).get_request_properties()

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.set_response_header(idx, "content-type", value)

    def get_response_content_type(self, idx: int) -> str | None:
        return self.get_response_headers(idx).get("content-type")

    def get_response_status(self, idx: int) -> tuple[int, str | None]:
        processor = self._processor(idx)
        return processor.get_response_status_code(), processor.get_response_status_phrase()

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        if self.request_processor is not None and self.request_processor[idx] is not None:
            self.request_processor[idx].report_status(code, reason_phrase=phrase)

    def get_response_headers(self, idx: int) -> dict[str, str]:
        return self._processor(idx).get_response_headers()

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self._processor(idx).add_response_property(key, value)


# ---------------------------------------------------------------- the worker


class Answer:
    def __init__(self, status: int, phrase: str | None, content_type: str | None, body: bytes):
        self.status, self.phrase, self.content_type, self.body = status, phrase, content_type, body


class Worker:
    """One TorchServe worker: the handler service, one request at a time (batch size 1)."""

    def __init__(self, model_dir: str, gpu_id: int | None) -> None:
        from sagemaker_pytorch_serving_container.handler_service import HandlerService

        self.context = Context(model_dir, gpu_id, importlib.metadata.version(PACKAGE))
        self.service = HandlerService()
        self.service.initialize(self.context)  # imports code/inference.py, runs model_fn
        self._lock = threading.Lock()

    def invoke(self, body: bytes, headers: dict[str, str]) -> Answer:
        # ts/service.py retrieve_data_for_inference: the body is the parameter "body" (bytes:
        # the image sets decode_input_request=false), headers beside its content type.
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        properties: dict[str, Any] = {"body": {"content-type": content_type}, **headers}
        with self._lock:
            processor = RequestProcessor(properties)
            self.context.request_processor = [processor]
            self.context.request_ids = {0: str(uuid.uuid4())}
            try:
                result = self.service.handle([{"body": body}], self.context)
            except Exception:  # ts/service.py predict: "Prediction failed", 503
                traceback.print_exc()
                return Answer(503, None, None, b"Prediction failed")
        status, phrase = self.context.get_response_status(0)
        return Answer(status, phrase, self.context.get_response_content_type(0), _encode(result[0]))


def worker_count(environ: Mapping[str, str], gpus: int, cpus: int) -> int:
    """How many workers the image's TorchServe starts for the model:
    sagemaker_pytorch_serving_container/torchserve.py _generate_ts_config_properties writes
    default_workers_per_model = SAGEMAKER_MODEL_SERVER_WORKERS, unless any SAGEMAKER_TS_*
    is set (ts_environment.py is_env_set): then the model's minWorkers,
    SAGEMAKER_TS_MIN_WORKERS (default 1). The image sets enable_envvars_config=true, so
    TS_DEFAULT_WORKERS_PER_MODEL overrides the file's value. Unset, TorchServe's
    ConfigManager.getDefaultWorkers: one per GPU, else one per CPU."""
    if any(key.startswith("SAGEMAKER_TS_") for key in environ):
        return int(environ.get("SAGEMAKER_TS_MIN_WORKERS", "1"))
    configured = environ.get("TS_DEFAULT_WORKERS_PER_MODEL") or environ.get(
        "SAGEMAKER_MODEL_SERVER_WORKERS"
    )
    if configured and int(configured) > 0:
        return int(configured)
    return gpus or cpus


class WorkerPool:
    """TorchServe's workers for the one model: each a handler service with its own copy of
    the model, a request goes to whichever is free. TorchServe runs them as processes; here
    they are threads of one process (the forward pass releases the GIL), and torch's
    intra-op threads per call come from OMP_NUM_THREADS, which every TorchServe worker
    inherits from the container's environment (torch reads it at import)."""

    def __init__(self, model_dir: str, environ: Mapping[str, str]) -> None:
        import torch

        gpus = torch.cuda.device_count()
        self.size = worker_count(environ, gpus, os.cpu_count() or 1)
        self.threads = torch.get_num_threads()
        self._free: queue.SimpleQueue[Worker] = queue.SimpleQueue()
        for index in range(self.size):  # TorchServe hands GPUs out round-robin
            self._free.put(Worker(model_dir, index % gpus if gpus else None))

    def invoke(self, body: bytes, headers: dict[str, str]) -> Answer:
        worker = self._free.get()
        try:
            return worker.invoke(body, headers)
        finally:
            self._free.put(worker)


def _encode(value: Any) -> bytes:
    """ts/protocol/otf_message_handler.py create_predict_response: bytes as they are, text
    as UTF-8, anything else as JSON."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, indent=2).encode("utf-8")


# ---------------------------------------------------------------- HTTP


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    worker: WorkerPool
    region: str
    account: str


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sagemaker-pytorch-inference-local"
    server: _Server

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/ping":
            self._send(200, None, "application/json", b'{"status": "Healthy"}\n')
        else:
            self._not_found()

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        match = RUNTIME_PATH.match(path)
        length = int(self.headers.get("Content-Length") or 0)
        if path != "/invocations" and not match:
            self.rfile.read(length)
            self._not_found()
            return
        if length > MAX_REQUEST_SIZE:  # TorchServe's frontend refuses it before any worker
            self.close_connection = True
            message = f"request body of {length} bytes is over max_request_size"
            answer = Answer(413, None, "application/json", _ts_error(413, message))
        else:
            answer = self.server.worker.invoke(self.rfile.read(length), dict(self.headers))
        if match:
            self._runtime_answer(match.group(1), answer)
        else:
            self._send(answer.status, answer.phrase, answer.content_type, answer.body)

    def _runtime_answer(self, endpoint: str, answer: Answer) -> None:
        """What sagemaker-runtime InvokeEndpoint returns for the container's answer."""
        if 200 <= answer.status < 300:
            extra = {"x-Amzn-Invoked-Production-Variant": VARIANT}
            self._send(200, None, answer.content_type or "application/json", answer.body, extra)
            return
        # AWS's 424 ModelError: the container's status and whole body, and a Message naming
        # the log group and the account (as AWS's does, so clients must not quote it).
        region, account = self.server.region, self.server.account
        kind = "client" if answer.status < 500 else "server"
        text = answer.body.decode("utf-8", errors="replace")
        group = f"/aws/sagemaker/Endpoints/{endpoint}"
        error = {
            "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL",
            "OriginalStatusCode": answer.status,
            "OriginalMessage": text,
            "LogStreamArn": f"arn:aws:logs:{region}:{account}:log-group:{group}",
            "Message": (
                f'Received {kind} error ({answer.status}) from primary with message "{text}". '
                f"See https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
                f"#logEventViewer:group={group} in account {account} for more information."
            ),
        }
        body = json.dumps(error).encode()
        self._send(424, None, "application/json", body, {"x-amzn-ErrorType": "ModelError"})

    def _not_found(self) -> None:
        message = "Requested resource is not found, please refer to API document."
        self._send(404, None, "application/json", _ts_error(404, message))

    def _send(
        self,
        status: int,
        phrase: str | None,
        content_type: str | None,
        body: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        sent = {"Content-Length": str(len(body)), "x-amzn-RequestId": str(uuid.uuid4())}
        if content_type:  # TorchServe sets none when the handler set none (every error)
            sent["Content-Type"] = content_type
        if self.close_connection:
            sent["Connection"] = "close"
        self.send_response(status, phrase)
        for key, value in {**sent, **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def _ts_error(code: int, message: str) -> bytes:
    """The JSON TorchServe's frontend answers with for its own errors (NettyUtils.sendError)."""
    kind = {404: "ResourceNotFoundException", 413: "RequestEntityTooLarge"}.get(code, "Error")
    return json.dumps({"code": code, "type": kind, "message": message}, indent=2).encode()


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (how SageMaker stops a container): exit 0 below


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="the extracted model (/opt/ml/model)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--account", default="123456789012", help="named in ModelError")
    args = parser.parse_args(argv)
    sys.meta_path.insert(0, _NoDogclf())
    signal.signal(signal.SIGTERM, _stop)
    server = _Server((args.host, args.port), Handler)
    server.worker = WorkerPool(args.model_dir, os.environ)
    sys.stderr.write(
        f"model server: {server.worker.size} workers (SAGEMAKER_MODEL_SERVER_WORKERS), "
        f"torch on {server.worker.threads} thread(s) each (OMP_NUM_THREADS)\n"
    )
    server.region, server.account = args.region, args.account
    host, port = str(server.server_address[0]), int(server.server_address[1])
    version = importlib.metadata.version(PACKAGE)
    # The one line the parent waits for (serve_process.READY_LINE).
    print(f"Serving {args.model_dir} with {PACKAGE} {version} on http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
