"""The Lambda entry point: validate the event, call the SageMaker endpoint, answer top-k.

Configuration comes from environment variables that `dogclf lambda-deploy` sets:
ENDPOINT_NAME (required), TOP_K, MAX_PAYLOAD_BYTES, MAX_IMAGES, ALLOWED_S3_PREFIX
("s3://bucket/prefix/" enables the s3_uri form), ENDPOINT_TIMEOUT_S, ENDPOINT_MAX_ATTEMPTS,
ENDPOINT_MAX_BODY_BYTES (what the endpoint takes: 4 MB serverless, 6 MB real-time).

Clients are created once, at import (the init phase), with short timeouts and few retries so
a slow endpoint becomes a 504 before the function itself times out. Only the standard
library and the runtime's boto3 are used.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    ReadTimeoutError,
)

from .events import HttpError, Limits, Request, check_size, parse_event, sniff_image
from .responses import error, log_request, ok

# The sagemaker-runtime request body cap (bytes) of a real-time endpoint; serverless: 4 MB.
RUNTIME_MAX_BODY = 6 * 1024 * 1024
THROTTLED = {"ThrottlingException", "TooManyRequestsException", "Throttling"}
UNAVAILABLE = {"ServiceUnavailable", "ModelNotReadyException", "InternalDependencyException"}
# Content types the endpoint takes as raw bytes; other formats go as application/x-image.
RAW_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
# The model's 4xx, passed on to the caller with the code the handler's own refusals use.
MODEL_CODES = {400: "BadRequest", 413: "PayloadTooLarge", 415: "UnsupportedMediaType"}
MESSAGE_CHARS = 300  # of the model's message quoted to the caller


@dataclass(frozen=True)
class Settings:
    endpoint_name: str
    limits: Limits
    timeout_s: float
    max_attempts: int
    max_body: int = RUNTIME_MAX_BODY

    @classmethod
    def from_env(cls, env: Any = os.environ) -> Settings:
        prefix = env.get("ALLOWED_S3_PREFIX") or None
        if prefix is not None and not prefix.endswith("/"):
            prefix += "/"
        return cls(
            endpoint_name=env["ENDPOINT_NAME"],
            limits=Limits(
                max_bytes=int(env.get("MAX_PAYLOAD_BYTES", 5 * 1024 * 1024)),
                max_images=int(env.get("MAX_IMAGES", 16)),
                default_top_k=int(env.get("TOP_K", 5)),
                s3_prefix=prefix,
            ),
            timeout_s=float(env.get("ENDPOINT_TIMEOUT_S", 10)),
            max_attempts=int(env.get("ENDPOINT_MAX_ATTEMPTS", 2)),
            max_body=int(env.get("ENDPOINT_MAX_BODY_BYTES", RUNTIME_MAX_BODY)),
        )


SETTINGS = Settings.from_env()
_CLIENT_CONFIG = Config(
    connect_timeout=min(SETTINGS.timeout_s, 3),
    read_timeout=SETTINGS.timeout_s,
    retries={"mode": "standard", "total_max_attempts": SETTINGS.max_attempts},
)
RUNTIME = boto3.client("sagemaker-runtime", config=_CLIENT_CONFIG)
# Only functions with the s3 form enabled pay for a second client at cold start.
S3 = boto3.client("s3", config=_CLIENT_CONFIG) if SETTINGS.limits.s3_prefix else None


def handler(event: Any, context: Any) -> dict[str, Any]:
    started = time.perf_counter()
    request_id = str(getattr(context, "aws_request_id", "") or os.urandom(16).hex())
    record: dict[str, Any] = {
        "request_id": request_id,
        "source": None,
        "images": 0,
        "image_bytes": 0,
        "endpoint_ms": None,
    }
    try:
        request = parse_event(event, SETTINGS.limits)
        record["source"] = request.source
        if request.s3 is not None:
            request.images = [_read_s3(*request.s3)]
        record["images"] = len(request.images)
        record["image_bytes"] = sum(len(image) for image in request.images)
        types = [sniff_image(image) for image in request.images]
        t0 = time.perf_counter()
        try:
            predictions = _classify(request, types)
        finally:
            record["endpoint_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        result = ok(predictions, request_id)
    except HttpError as exc:
        record["error"] = exc.code
        result = error(exc.status, exc.code, exc.message, request_id)
    except Exception as exc:  # never a stack trace to the caller; the log line has the type
        record["error"] = f"InternalError:{type(exc).__name__}"
        result = error(500, "InternalError", "internal error; quote the request id", request_id)
    record["status"] = result["statusCode"]
    record["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
    log_request(record)
    return result


def _read_s3(bucket: str, key: str) -> bytes:
    assert S3 is not None  # parse_event refuses s3_uri when the prefix is unset
    max_bytes = SETTINGS.limits.max_bytes
    try:
        obj = S3.get_object(Bucket=bucket, Key=key)
        check_size(int(obj.get("ContentLength", 0)), max_bytes)
        data: bytes = obj["Body"].read(max_bytes + 1)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "NoSuchBucket", "AccessDenied", "403", "404"):
            # Without s3:ListBucket, S3 says AccessDenied for a missing key: same answer.
            raise HttpError(404, "NotFound", f"cannot read s3://{bucket}/{key}") from None
        raise HttpError(502, "StorageError", "reading the image from S3 failed") from None
    except BotoCoreError:
        raise HttpError(502, "StorageError", "reading the image from S3 failed") from None
    check_size(len(data), max_bytes)
    return data


def _classify(request: Request, types: list[str]) -> Any:
    """Call the endpoint; its top-k lists come back in the shape the request used."""
    try:
        response = RUNTIME.invoke_endpoint(
            EndpointName=SETTINGS.endpoint_name,
            Accept="application/json",
            **_endpoint_body(request, types),
        )
        payload = json.loads(response["Body"].read())
    except ClientError as exc:
        raise _endpoint_error(exc) from None
    except (ReadTimeoutError, ConnectTimeoutError):
        raise HttpError(504, "EndpointTimeout", "the endpoint did not answer in time") from None
    except BotoCoreError:
        raise HttpError(502, "EndpointUnreachable", "the endpoint could not be reached") from None
    except ValueError:
        raise HttpError(502, "EndpointError", "the endpoint answered with invalid JSON") from None
    predictions = payload.get("predictions") if isinstance(payload, dict) else None
    if not isinstance(predictions, list):
        raise HttpError(502, "EndpointError", "the endpoint answered without predictions")
    if request.batch:
        if len(predictions) != len(request.images) or not all(
            isinstance(p, list) for p in predictions
        ):
            raise HttpError(502, "EndpointError", "the endpoint answered for the wrong count")
        return [p[: request.top_k] for p in predictions]
    return predictions[: request.top_k]


def _endpoint_body(request: Request, types: list[str]) -> dict[str, Any]:
    """JSON with base64 images and top_k; a lone image too big for that goes as raw bytes."""
    encoded = [base64.b64encode(image).decode("ascii") for image in request.images]
    if request.batch:
        doc: dict[str, Any] = {"images": encoded, "top_k": request.top_k}
    else:
        doc = {"image": encoded[0], "top_k": request.top_k}
    body = json.dumps(doc).encode()
    if len(body) <= SETTINGS.max_body:
        return {"ContentType": "application/json", "Body": body}
    # Base64 grows a batch by a third: refused before the endpoint refuses it.
    check_size(len(body) if request.batch else len(request.images[0]), SETTINGS.max_body)
    # A lone image whose base64 is over the cap (the s3 form, or a serverless endpoint's
    # 4 MB) goes raw. `dogclf serve` reads top_k from the custom attributes; an endpoint
    # that ignores them answers its default top-k, which _classify cuts to top_k.
    return {
        "ContentType": types[0] if types[0] in RAW_TYPES else "application/x-image",
        "Body": request.images[0],
        "CustomAttributes": f"top_k={request.top_k}",
    }


def _endpoint_error(exc: ClientError) -> HttpError:
    """Map the runtime's errors to the model's 4xx or 502/503/504, quoting only the model's
    own message."""
    err = exc.response.get("Error", {})
    code = str(err.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code == "ModelError":
        return _model_error(exc.response)
    if code in THROTTLED or status == 429:
        return HttpError(503, "Throttled", "the endpoint is throttling requests; retry shortly")
    if code in UNAVAILABLE or status == 503:
        return HttpError(503, "EndpointUnavailable", "the endpoint is not available; retry")
    # Anything else (e.g. a missing endpoint) has a message naming the account: not quoted.
    return HttpError(502, "EndpointError", f"the endpoint call failed ({code or status})")


def _model_error(response: Mapping[str, Any]) -> HttpError:
    """The model's own answer, carried in AWS's ModelError: its 4xx stays a 4xx (the input's
    fault: 400 bad image, 413 too big, 415 not an image), anything else is a 502."""
    status = int(response.get("OriginalStatusCode") or 0)
    detail = _model_message(response.get("OriginalMessage"))
    if 400 <= status < 500:
        return HttpError(status, MODEL_CODES.get(status, "ModelRejected"), detail)
    return HttpError(
        502, "ModelError", f"the model could not classify the image (status {status}): {detail}"
    )


def _model_message(original: Any) -> str:
    """One line of the model server's error body, never a traceback: the PyTorch inference
    image answers "message\nTraceback ..." as plain text (sagemaker_inference transformer.py
    handle_error), `dogclf serve` JSON with a "message". AWS's own Message names the account
    and is never quoted."""
    text = str(original or "")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        text = doc["message"]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:MESSAGE_CHARS] if lines else "no message"
