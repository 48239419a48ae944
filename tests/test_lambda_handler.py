"""The Lambda handler, called in-process as the runtime calls it, against the endpoint as the
PyTorch inference image serves it (AWS's handler service in a child process, reached through
AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME; one test on the BYO image's `dogclf serve`) and moto's S3;
and `predict --via lambda` through moto's Lambda invoke running the deployed zip.

Throttling and timeouts come from a stdlib stand-in runtime (StubRuntime), because a real
endpoint cannot be made to throttle or stall on demand.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from PIL import Image
from serving_support import NON_UTF8_JSON, bomb_png, crashing_model

from dogclf.local.emulator import Emulator

LABELS = ["Affenpinscher", "Afghan_hound", "Airedale_terrier", "Akita"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_tiny_model(root: Path) -> Path:
    """A model.tar.gz from the training core's own writer (random tiny_cnn weights: the
    tests compare the Lambda's answers with the endpoint's, not with the truth)."""
    import torch

    from dogclf.model.artifact import pack_model_dir, write_model_dir
    from dogclf.model.network import build_model

    torch.manual_seed(0)
    model_dir = write_model_dir(
        root / "model",
        model=build_model("tiny_cnn", len(LABELS)),
        arch="tiny_cnn",
        num_classes=len(LABELS),
        image_size=64,
        labels=LABELS,
        metrics={},
    )
    return pack_model_dir(model_dir, root / "model.tar.gz")


@contextmanager
def serve_process(model: Path) -> Iterator[str]:
    """The real `dogclf serve` on a free port (the BYO image); yields its URL once it serves."""
    from dogclf.local.serve_process import start_serve

    env = {k: v for k, v in os.environ.items() if not k.startswith("DOGCLF_")}
    process = start_serve(str(model), env=env)
    try:
        yield process.url
    finally:
        process.stop()


@contextmanager
def handler_service(model: Path, base_dir: Path) -> Iterator[str]:
    """AWS's handler service serving `model` as the PyTorch inference image would."""
    from dogclf.local.serve_process import start_pytorch_inference

    env = {k: v for k, v in os.environ.items() if not k.startswith("DOGCLF_")}
    env["SAGEMAKER_PROGRAM"] = "inference.py"
    process = start_pytorch_inference(model, base_dir, env=env, log_path=base_dir / "log")
    try:
        yield process.url
    finally:
        process.stop()


HANDLER_ENV = (
    "ENDPOINT_NAME",
    "TOP_K",
    "MAX_PAYLOAD_BYTES",
    "MAX_IMAGES",
    "ALLOWED_S3_PREFIX",
    "ENDPOINT_TIMEOUT_S",
    "ENDPOINT_MAX_ATTEMPTS",
)


def load_handler(monkeypatch: Any, runtime_url: str, **env: str) -> ModuleType:
    """Import (or re-import) the handler module as the Lambda runtime would, after setting
    its environment: module-level settings and clients are built from it at import."""
    for name in HANDLER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENDPOINT_NAME", "dogclf-dev")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", runtime_url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    module = importlib.import_module("dogclf.lambda_handler.handler")
    return importlib.reload(module)


class FakeContext:
    """Carries what the Lambda runtime's context carries (the account id among it), so a
    test can show none of it reaches a response; the runtime's own class exists only there."""

    aws_request_id = "c0ffee00-1111-4222-8333-444455556666"
    function_name = "dogclf-dev-predict"
    function_version = "7"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:dogclf-dev-predict:live"
    memory_limit_in_mb = "256"
    log_group_name = "/aws/lambda/dogclf-dev-predict"
    log_stream_name = "2026/11/25/[7]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


class StubRuntime:
    """A stdlib HTTP server answering sagemaker-runtime InvokeEndpoint: throttling, slowness
    and canned answers are what a real endpoint cannot be told to do on demand."""

    def __init__(self, mode: str, delay: float = 0.0) -> None:
        self.mode = mode
        self.delay = delay
        self.calls = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub.calls += 1
                if stub.delay:
                    time.sleep(stub.delay)
                status, headers, body = stub.answer()
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    # The slow answer's client timed out and left, as the test means it to.
                    # Unhandled, socketserver prints a traceback to sys.stderr, after the
                    # test, into whatever holds stderr then (another test's CliRunner).
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False  # a deliberately slow answer must not hold close()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        if self.mode == "throttle":
            body = json.dumps({"message": "Rate exceeded for account 123456789012"}).encode()
            return 429, {"x-amzn-ErrorType": "ThrottlingException"}, body
        if self.mode == "not-json":
            return 200, {"Content-Type": "text/plain"}, b"<html>oops</html>"
        if self.mode == "missing-endpoint":
            body = json.dumps(
                {"message": "Endpoint dogclf-dev of account 123456789012 not found."}
            ).encode()
            return 400, {"x-amzn-ErrorType": "ValidationError"}, body
        predictions = [{"label": "Akita", "index": 3, "probability": 0.9}]
        return (
            200,
            {"Content-Type": "application/json"},
            json.dumps({"predictions": predictions}).encode(),
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> StubRuntime:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# ================================================================ fixtures

ACCOUNT = "123456789012"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("lambda-model"))


@pytest.fixture(scope="session")
def endpoint_url(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint on the PyTorch inference image (dogclf's default): the handler service."""
    with handler_service(tiny_model, tmp_path_factory.mktemp("lambda-endpoint")) as url:
        yield url


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    from dogclf.training.synthetic import make_dataset

    root = make_dataset(
        tmp_path_factory.mktemp("lambda-images"), classes=3, per_class=3, size_range=(48, 80)
    )
    return [p.read_bytes() for p in sorted((root / "test").rglob("*.jpg"))]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def endpoint_top_k(endpoint_url: str, image: bytes, k: int) -> list[dict[str, Any]]:
    """What the endpoint itself answers (boto3 invoke_endpoint, no Lambda in between)."""
    import boto3

    runtime = boto3.client("sagemaker-runtime", endpoint_url=endpoint_url)
    answer = runtime.invoke_endpoint(
        EndpointName="dogclf-dev",
        Body=image,
        ContentType="image/jpeg",
        CustomAttributes=f"top_k={k}",
    )
    predictions: list[dict[str, Any]] = json.loads(answer["Body"].read())["predictions"]
    return predictions


def body_of(response: dict[str, Any]) -> dict[str, Any]:
    assert set(response) == {"statusCode", "headers", "body"}
    assert response["headers"]["Content-Type"] == "application/json"
    doc: dict[str, Any] = json.loads(response["body"])
    return doc


def http_v2(body: str, *, binary: bool, content_type: str, method: str = "POST") -> dict[str, Any]:
    """A Lambda function URL / API Gateway HTTP API (payload 2.0) event."""
    return {
        "version": "2.0",
        "rawPath": "/",
        "headers": {"content-type": content_type, "host": "abc.lambda-url.us-east-1.on.aws"},
        "requestContext": {"accountId": ACCOUNT, "http": {"method": method, "path": "/"}},
        "body": body,
        "isBase64Encoded": binary,
    }


def rest_v1(body: str, *, binary: bool, content_type: str) -> dict[str, Any]:
    """An API Gateway REST API (payload 1.0) event."""
    return {
        "resource": "/predict",
        "path": "/predict",
        "httpMethod": "POST",
        "headers": {"Content-Type": content_type},
        "requestContext": {"accountId": ACCOUNT, "stage": "prod"},
        "body": body,
        "isBase64Encoded": binary,
    }


# ================================================================ the event forms


@pytest.fixture(scope="session")
def byo_endpoint_url(tiny_model: Path) -> Iterator[str]:
    """The endpoint on dogclf's BYO image: a real `dogclf serve`."""
    with serve_process(tiny_model) as url:
        yield url


@pytest.mark.slow
@pytest.mark.parametrize("server", ["endpoint_url", "byo_endpoint_url"])
def test_every_event_form_gets_the_endpoints_top_k(
    aws: Emulator,
    server: str,
    images: list[bytes],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    from dogclf.aws.session import AwsContext

    endpoint_url: str = request.getfixturevalue(server)

    s3 = AwsContext().client("s3")
    s3.create_bucket(Bucket="dogclf-test-bucket")
    s3.put_object(Bucket="dogclf-test-bucket", Key="dogclf/dev/data/test/a.jpg", Body=images[0])
    h = load_handler(
        monkeypatch,
        endpoint_url,
        ALLOWED_S3_PREFIX="s3://dogclf-test-bucket/dogclf/dev/data/",
        TOP_K="3",
    )
    first, second = images[0], images[1]
    want1, want2 = endpoint_top_k(endpoint_url, first, 3), endpoint_top_k(endpoint_url, second, 3)
    image_json = json.dumps({"image": b64(first)})
    forms: dict[str, tuple[dict[str, Any], Any]] = {
        "direct image": ({"image": b64(first)}, want1),
        "direct images": ({"images": [b64(first), b64(second)]}, [want1, want2]),
        "direct top_k": ({"image": b64(first), "top_k": 2}, want1[:2]),
        "direct s3_uri": ({"s3_uri": "s3://dogclf-test-bucket/dogclf/dev/data/test/a.jpg"}, want1),
        "url binary": (http_v2(b64(first), binary=True, content_type="image/jpeg"), want1),
        "url json": (http_v2(image_json, binary=False, content_type="application/json"), want1),
        "url json base64": (
            http_v2(b64(image_json.encode()), binary=True, content_type="application/json"),
            want1,
        ),
        "rest v1 binary": (rest_v1(b64(first), binary=True, content_type="image/jpeg"), want1),
        "rest v1 json": (rest_v1(image_json, binary=False, content_type="application/json"), want1),
    }
    for name, (event, expected) in forms.items():
        response = h.handler(event, FakeContext())
        assert response["statusCode"] == 200, (name, response)
        doc = body_of(response)
        assert doc["predictions"] == expected, name
        assert doc["request_id"] == FakeContext.aws_request_id

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(forms)  # one structured line per request
    assert {line["status"] for line in lines} == {200}
    assert lines[1]["images"] == 2 and lines[1]["image_bytes"] == len(first) + len(second)
    assert all(line["endpoint_ms"] > 0 for line in lines)
    assert {line["source"] for line in lines} == {"direct", "http"}


# ================================================================ refusals

TEXT = b"hello, this is not an image at all"


def refusals(good: bytes) -> dict[str, tuple[Any, int, str]]:
    """name -> (event, status, a phrase the message must contain)."""
    return {
        "not an object": (["image"], 400, "must be a JSON object"),
        "no body": (http_v2("", binary=False, content_type="image/jpeg"), 400, "no body"),
        "no image key": ({"top_k": 3}, 400, "exactly one of image, images, s3_uri"),
        "two image keys": ({"image": b64(good), "images": [b64(good)]}, 400, "exactly one"),
        "unknown key": (
            {"image": b64(good), "url": "http://169.254.169.254/"},
            400,
            "unknown key(s) url",
        ),
        "bad base64": ({"image": "not base64!!"}, 400, "not valid base64"),
        "bad base64 body": (
            http_v2("%%%", binary=True, content_type="image/jpeg"),
            400,
            "not valid base64",
        ),
        "empty image string": ({"image": ""}, 400, "non-empty base64"),
        "images not a list": ({"images": b64(good)}, 400, "non-empty list"),
        "too many images": ({"images": [b64(good)] * 17}, 400, "at most 16 images"),
        "bad top_k": ({"image": b64(good), "top_k": 0}, 400, "top_k must be an integer"),
        "bool top_k": ({"image": b64(good), "top_k": True}, 400, "top_k must be an integer"),
        "non-image": ({"image": b64(TEXT)}, 415, "not a supported image"),
        "html body": (
            http_v2("<html></html>", binary=False, content_type="text/html"),
            415,
            "not a supported image",
        ),
        "bad json body": (
            http_v2("{nope", binary=False, content_type="application/json"),
            400,
            "not valid JSON",
        ),
        "too large": ({"image": b64(good + b"\0" * 60_000)}, 413, "above the limit of 50,000"),
        "too large body": (
            http_v2(b64(b"\xff\xd8\xff" + b"\0" * 60_000), binary=True, content_type="image/jpeg"),
            413,
            "above the limit",
        ),
        "get": (
            http_v2("", binary=False, content_type="image/jpeg", method="GET"),
            405,
            "use POST",
        ),
        "s3 outside prefix": (
            {"s3_uri": "s3://dogclf-test-bucket/dogclf/dev/models/model.tar.gz"},
            400,
            "under s3://dogclf-test-bucket/dogclf/dev/data/",
        ),
        "s3 other bucket": (
            {"s3_uri": "s3://someone-else/dogclf/dev/data/x.jpg"},
            400,
            "must name an object under",
        ),
        "s3 dot segments": (
            {"s3_uri": "s3://dogclf-test-bucket/dogclf/dev/data/../models/m.tar.gz"},
            400,
            "must name an object under",
        ),
        "s3 not a uri": (
            {"s3_uri": "https://dogclf-test-bucket.s3.amazonaws.com/x.jpg"},
            400,
            "s3://bucket/key",
        ),
        "s3 missing object": (
            {"s3_uri": "s3://dogclf-test-bucket/dogclf/dev/data/nope.jpg"},
            404,
            "cannot read",
        ),
        # The model's own refusals (AWS's ModelError around the toolkit's 400 / 413) stay 4xx.
        "truncated jpeg": ({"image": b64(good[:150])}, 400, "corrupt or truncated"),
        "decompression bomb": ({"image": b64(bomb_png(10_000))}, 413, "decompression bomb"),
        "non-utf8 json body": (
            http_v2(b64(NON_UTF8_JSON), binary=True, content_type="application/json"),
            400,
            "not valid JSON",
        ),
    }


@pytest.mark.slow
def test_refusals_have_the_right_status_message_and_request_id(
    aws: Emulator,
    endpoint_url: str,
    images: list[bytes],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dogclf.aws.session import AwsContext

    AwsContext().client("s3").create_bucket(Bucket="dogclf-test-bucket")
    h = load_handler(
        monkeypatch,
        endpoint_url,
        MAX_PAYLOAD_BYTES="50000",
        ALLOWED_S3_PREFIX="s3://dogclf-test-bucket/dogclf/dev/data",
    )
    cases = refusals(images[0])
    for name, (event, status, phrase) in cases.items():
        response = h.handler(event, FakeContext())
        doc = body_of(response)
        assert response["statusCode"] == status, (name, doc)
        assert phrase in doc["message"], (name, doc)
        assert doc["request_id"] == FakeContext.aws_request_id
        assert set(doc) == {"error", "message", "request_id"}
        assert "Traceback" not in response["body"] and ACCOUNT not in response["body"], name
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["status"] for line in lines] == [status for _, status, _ in cases.values()]
    assert all(line["request_id"] == FakeContext.aws_request_id for line in lines)


@pytest.fixture(scope="session")
def crashing_endpoint_url(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The handler service over a model whose predict_fn raises: the toolkit's 500."""
    from dogclf.model.artifact import extract_model_tar

    root = tmp_path_factory.mktemp("crashing-endpoint")
    model = crashing_model(extract_model_tar(tiny_model, root / "good"), root / "crashing")
    with handler_service(model, root / "endpoint") as url:
        yield url


@pytest.mark.slow
def test_a_model_crash_is_a_502_with_one_clean_line(
    aws: Emulator, crashing_endpoint_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS's ModelError carries the container's 500 and its plain-text body (message and
    traceback), and a Message naming the account: the caller gets the first line only."""
    import boto3
    import botocore.exceptions

    runtime = boto3.client("sagemaker-runtime", endpoint_url=crashing_endpoint_url)
    with pytest.raises(botocore.exceptions.ClientError) as raw:
        runtime.invoke_endpoint(EndpointName="dogclf-dev", Body=png(), ContentType="image/png")
    assert raw.value.response["OriginalStatusCode"] == 500
    assert "Traceback" in raw.value.response["OriginalMessage"]
    assert ACCOUNT in raw.value.response["Error"]["Message"]  # what must never be quoted

    h = load_handler(monkeypatch, crashing_endpoint_url)
    response = h.handler({"image": b64(png())}, FakeContext())
    assert response["statusCode"] == 502
    doc = body_of(response)
    assert doc["error"] == "ModelError"
    assert doc["message"] == (
        "the model could not classify the image (status 500): the model crashed"
    )
    assert "Traceback" not in response["body"] and ACCOUNT not in response["body"]


def test_non_utf8_json_is_refused_before_the_endpoint(
    aws: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS's toolkit would answer such a body with a 500 (test_serving_inference): the
    handler refuses it with a 400 and never calls the endpoint."""
    with StubRuntime("ok") as stub:
        h = load_handler(monkeypatch, stub.url)
        event = http_v2(b64(NON_UTF8_JSON), binary=True, content_type="application/json")
        response = h.handler(event, FakeContext())
    assert response["statusCode"] == 400 and "not valid JSON" in body_of(response)["message"]
    assert stub.calls == 0


def test_s3_form_is_refused_when_not_enabled(
    aws: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = load_handler(monkeypatch, "http://127.0.0.1:9")
    response = h.handler({"s3_uri": "s3://b/dogclf/dev/data/x.jpg"}, FakeContext())
    assert response["statusCode"] == 400
    assert "not enabled" in body_of(response)["message"]
    assert h.S3 is None  # no second client paid for at cold start


def test_endpoint_down_is_502(aws: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    h = load_handler(monkeypatch, f"http://127.0.0.1:{free_port()}", ENDPOINT_MAX_ATTEMPTS="1")
    response = h.handler({"image": b64(png())}, FakeContext())
    assert response["statusCode"] == 502
    assert body_of(response)["error"] == "EndpointUnreachable"


def test_throttled_endpoint_is_503_without_its_message(
    aws: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with StubRuntime("throttle") as stub:
        h = load_handler(monkeypatch, stub.url, ENDPOINT_MAX_ATTEMPTS="1")
        response = h.handler({"image": b64(png())}, FakeContext())
    assert response["statusCode"] == 503
    assert response["headers"]["Retry-After"] == "1"
    assert body_of(response)["error"] == "Throttled"
    assert ACCOUNT not in response["body"]  # AWS's message names the account: never quoted


def test_throttling_is_retried_once_by_default(
    aws: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with StubRuntime("throttle") as stub:
        h = load_handler(monkeypatch, stub.url)
        assert h.handler({"image": b64(png())}, FakeContext())["statusCode"] == 503
    assert stub.calls == 2


def test_slow_endpoint_is_504(aws: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    with StubRuntime("ok", delay=2.0) as stub:
        h = load_handler(monkeypatch, stub.url, ENDPOINT_TIMEOUT_S="0.3", ENDPOINT_MAX_ATTEMPTS="1")
        response = h.handler({"image": b64(png())}, FakeContext())
    assert response["statusCode"] == 504
    assert body_of(response)["error"] == "EndpointTimeout"


@pytest.mark.parametrize(
    ("mode", "error"), [("missing-endpoint", "EndpointError"), ("not-json", "EndpointError")]
)
def test_odd_endpoint_answers_are_502_without_aws_text(
    aws: Emulator, monkeypatch: pytest.MonkeyPatch, mode: str, error: str
) -> None:
    with StubRuntime(mode) as stub:
        h = load_handler(monkeypatch, stub.url)
        response = h.handler({"image": b64(png())}, FakeContext())
    assert response["statusCode"] == 502
    assert body_of(response)["error"] == error
    assert ACCOUNT not in response["body"] and "not found" not in response["body"]


def test_no_response_carries_the_context_or_the_account(
    aws: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = FakeContext()
    secrets = [
        ACCOUNT,
        context.invoked_function_arn,
        context.log_group_name,
        context.log_stream_name,
        context.function_name,
    ]
    with StubRuntime("ok") as stub:
        h = load_handler(monkeypatch, stub.url)
        events = [
            {"image": b64(png())},
            {"image": b64(TEXT)},
            {"nope": 1},
            http_v2(b64(png()), binary=True, content_type="image/png"),
            http_v2("", binary=False, content_type="image/png"),
        ]
        responses = [h.handler(event, context) for event in events]
    assert [r["statusCode"] for r in responses] == [200, 415, 400, 200, 400]
    for response in responses:
        text = json.dumps(response)
        assert not [s for s in secrets if s in text], text
        assert set(body_of(response)) <= {"predictions", "request_id", "error", "message"}


def test_the_zip_runs_without_dogclf(tmp_path: Path) -> None:
    """Unpacked alone, as Lambda unpacks it: the handler imports, and pulls in nothing of
    dogclf, torch or pydantic (its only dependency is the runtime's boto3)."""
    import zipfile

    from dogclf.aws.lambda_fn import build_zip

    zipfile.ZipFile(io.BytesIO(build_zip())).extractall(tmp_path)
    probe = (
        "import sys, json; import lambda_handler.handler as h; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    env = {
        "PATH": os.environ["PATH"],
        "ENDPOINT_NAME": "dogclf-dev",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(json.loads(done.stdout))
    assert "lambda_handler" in loaded and "boto3" in loaded
    assert not loaded & {"dogclf", "torch", "pydantic", "typer", "rich", "PIL"}


# ================================================================ predict --via lambda


@pytest.mark.slow
def test_predict_via_lambda_matches_the_endpoint(
    aws: Emulator,
    endpoint_url: str,
    tmp_path: Path,
    images: list[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """lambda-deploy into moto, then moto's Lambda invoke runs the deployed zip (moto_ext's
    emulated runtime) against the real `dogclf serve`: the same table as --via endpoint."""
    from typer.testing import CliRunner

    from dogclf.cli import app
    from dogclf.local.moto_ext import enable_lambda_runtime

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", endpoint_url)  # for --via endpoint
    runner = CliRunner()
    assert runner.invoke(app, ["lambda-deploy"]).exit_code == 0
    enable_lambda_runtime(aws.url, {"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": endpoint_url})
    files = []
    for i, data in enumerate(images[:3]):
        files.append(tmp_path / f"dog{i}.jpg")
        files[-1].write_bytes(data)
    (tmp_path / "notes.jpg").write_bytes(TEXT)

    via_lambda = runner.invoke(
        app, ["predict", *map(str, files), "--via", "lambda", "--json", "--top-k", "3"]
    )
    via_endpoint = runner.invoke(app, ["predict", *map(str, files), "--json", "--top-k", "3"])

    assert via_lambda.exit_code == 0, via_lambda.output
    assert json.loads(via_lambda.stdout) == json.loads(via_endpoint.stdout)
    assert len(json.loads(via_lambda.stdout)[0]["predictions"]) == 3
    table = runner.invoke(app, ["predict", str(files[0]), "--via", "lambda"])
    assert table.exit_code == 0 and "probability" in table.stdout
    bad = runner.invoke(app, ["predict", str(tmp_path / "notes.jpg"), "--via", "lambda"])
    assert bad.exit_code == 1
    assert "notes.jpg: not a supported image" in bad.output and "Traceback" not in bad.output
    # The function's structured log lines reached its log group, one per invocation.
    from dogclf.aws.session import AwsContext

    events = (
        AwsContext()
        .client("logs")
        .filter_log_events(logGroupName="/aws/lambda/dogclf-dev-predict")["events"]
    )
    logged = [json.loads(e["message"]) for e in events if e["message"].startswith("{")]
    assert [line["status"] for line in logged] == [200, 200, 415]


def test_predict_via_lambda_before_deploy_says_what_to_do(
    aws: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from dogclf.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "dog.png").write_bytes(png())
    result = CliRunner().invoke(app, ["predict", "dog.png", "--via", "lambda"])
    assert result.exit_code == 1
    assert "does not exist" in result.output and "dogclf lambda-deploy" in result.output


def test_a_bug_is_a_500_with_the_request_id_and_no_trace(
    aws: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No real part can be made to raise an arbitrary exception inside the handler: the
    module's runtime client is swapped for one that does (the only mock in this file)."""

    class Broken:
        def invoke_endpoint(self, **_: Any) -> Any:
            raise RuntimeError("secret internals at /var/task/lambda_handler/handler.py:99")

    h = load_handler(monkeypatch, "http://127.0.0.1:9")
    monkeypatch.setattr(h, "RUNTIME", Broken())
    response = h.handler({"image": b64(png())}, FakeContext())
    assert response["statusCode"] == 500
    doc = body_of(response)
    assert doc == {
        "error": "InternalError",
        "message": "internal error; quote the request id",
        "request_id": FakeContext.aws_request_id,
    }
    line = json.loads(capsys.readouterr().out)
    assert line["error"] == "InternalError:RuntimeError" and line["status"] == 500


@pytest.mark.slow
def test_an_s3_image_too_big_for_json_goes_raw_with_top_k(
    aws: Emulator, endpoint_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Base64 would push a ~5 MB image past the runtime's 6 MB body cap: sent as raw bytes,
    top_k in the custom attributes (which `dogclf serve` honours)."""
    from dogclf.aws.session import AwsContext

    buffer = io.BytesIO()
    Image.effect_noise((2600, 2000), 90).convert("RGB").save(buffer, "JPEG", quality=95)
    big = buffer.getvalue()
    cap = 6 * 1024 * 1024
    assert len(big) < cap < 4 * len(big) / 3  # over the cap once base64-encoded, not raw
    s3 = AwsContext().client("s3")
    s3.create_bucket(Bucket="dogclf-test-bucket")
    s3.put_object(Bucket="dogclf-test-bucket", Key="dogclf/dev/data/big.jpg", Body=big)
    h = load_handler(
        monkeypatch,
        endpoint_url,
        MAX_PAYLOAD_BYTES=str(cap),
        ALLOWED_S3_PREFIX="s3://dogclf-test-bucket/dogclf/dev/data/",
    )
    event = {"s3_uri": "s3://dogclf-test-bucket/dogclf/dev/data/big.jpg", "top_k": 2}
    response = h.handler(event, FakeContext())
    assert response["statusCode"] == 200, response
    assert body_of(response)["predictions"] == endpoint_top_k(endpoint_url, big, 2)
