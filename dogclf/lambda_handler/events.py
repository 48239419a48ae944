"""Turn a Lambda event into a validated request, or an HttpError saying what is wrong.

Accepted events:
- direct invoke JSON: {"image": b64} | {"images": [b64, ...]} | {"s3_uri": "s3://b/k"},
  each with an optional "top_k";
- HTTP events (function URL / API Gateway HTTP API v2 / REST v1): a binary image body
  (isBase64Encoded) or the same JSON as a body.

Standard library only: this file is zipped into the function on its own.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

IMAGE_KEYS = ("image", "images", "s3_uri")
ALLOWED_KEYS = (*IMAGE_KEYS, "top_k")
MAX_TOP_K = 133  # the dogImages breed count; the endpoint clamps to its own label count
FORMATS = "JPEG, PNG, WebP, GIF, BMP or TIFF"


class HttpError(Exception):
    """A request we refuse: the HTTP status, a short code and a message for the caller."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def bad_request(message: str) -> HttpError:
    return HttpError(400, "BadRequest", message)


@dataclass(frozen=True)
class Limits:
    max_bytes: int  # decoded image bytes per request
    max_images: int
    default_top_k: int
    s3_prefix: str | None  # "s3://bucket/prefix/" or None when the s3 form is off


@dataclass
class Request:
    source: str  # "direct" or "http": for the log line
    top_k: int
    images: list[bytes] = field(default_factory=list)
    batch: bool = False  # the "images" form: one prediction list per image
    s3: tuple[str, str] | None = None  # (bucket, key) still to be fetched


def parse_event(event: Any, limits: Limits) -> Request:
    if not isinstance(event, dict):
        raise bad_request('the event must be a JSON object such as {"image": "<base64>"}')
    if _is_http(event):
        return _parse_http(event, limits)
    return _parse_json(event, limits, "direct")


def _is_http(event: dict[str, Any]) -> bool:
    return "requestContext" in event or "httpMethod" in event or "rawPath" in event


def _header(event: dict[str, Any], name: str) -> str:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name and isinstance(value, str):
            return value
    return ""


def _parse_http(event: dict[str, Any], limits: Limits) -> Request:
    method = (event.get("requestContext") or {}).get("http", {}).get("method") or event.get(
        "httpMethod"
    )
    if method and str(method).upper() != "POST":
        raise HttpError(405, "MethodNotAllowed", "use POST with an image body or JSON")
    body = event.get("body")
    if not body:
        raise bad_request('the request has no body: POST an image, or JSON {"image": "<base64>"}')
    if not isinstance(body, str):
        raise bad_request("the request body must be a string")
    # A JSON body carries base64 images: 4/3 of the image bytes, plus some slack.
    max_body = limits.max_bytes * 4 // 3 + 65536
    if event.get("isBase64Encoded"):
        raw = decode_base64(body, max_body, "the request body")
    else:
        check_size(len(body), max_body)
        raw = body.encode("utf-8")
    content_type = _header(event, "content-type").split(";")[0].strip().lower()
    if content_type == "application/json" or (
        content_type in ("", "text/plain") and raw.lstrip()[:1] == b"{"
    ):
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise bad_request("the body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise bad_request('the JSON body must be an object such as {"image": "<base64>"}')
        return _parse_json(payload, limits, "http")
    check_size(len(raw), limits.max_bytes)
    return Request(source="http", top_k=limits.default_top_k, images=[raw])


def _parse_json(payload: dict[str, Any], limits: Limits, source: str) -> Request:
    unknown = sorted(str(k) for k in payload if k not in ALLOWED_KEYS)
    if unknown:
        raise bad_request(
            f"unknown key(s) {', '.join(unknown)}; use one of {', '.join(IMAGE_KEYS)} "
            "and optionally top_k"
        )
    given = [k for k in IMAGE_KEYS if k in payload]
    if len(given) != 1:
        raise bad_request(f"give exactly one of {', '.join(IMAGE_KEYS)}")
    request = Request(source=source, top_k=_top_k(payload.get("top_k"), limits.default_top_k))
    key = given[0]
    if key == "image":
        request.images = [_image(payload["image"], limits.max_bytes, "image")]
    elif key == "images":
        items = payload["images"]
        if not isinstance(items, list) or not items:
            raise bad_request("images must be a non-empty list of base64 strings")
        if len(items) > limits.max_images:
            raise bad_request(f"at most {limits.max_images} images per request")
        total = 0
        for i, item in enumerate(items):
            data = _image(item, limits.max_bytes, f"images[{i}]")
            total += len(data)
            check_size(total, limits.max_bytes)  # the limit is per request, not per image
            request.images.append(data)
        request.batch = True
    else:
        request.s3 = parse_s3_uri(payload["s3_uri"], limits.s3_prefix)
    return request


def _top_k(value: Any, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_TOP_K:
        raise bad_request(f"top_k must be an integer from 1 to {MAX_TOP_K}")
    return value


def _image(value: Any, max_bytes: int, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise bad_request(f"{what} must be a non-empty base64 string")
    return decode_base64(value, max_bytes, what)


def check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise HttpError(
            413,
            "PayloadTooLarge",
            f"the payload is {size:,} bytes, above the limit of {max_bytes:,}",
        )


def decode_base64(text: str, max_bytes: int, what: str) -> bytes:
    """Strict base64 (no stray characters), refused before decoding when clearly too big."""
    check_size(len(text) * 3 // 4 - 2, max_bytes)
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{what} is not valid base64") from None
    check_size(len(data), max_bytes)
    return data


def parse_s3_uri(value: Any, prefix: str | None) -> tuple[str, str]:
    if prefix is None:
        raise bad_request("s3_uri input is not enabled for this function; send the image inline")
    if not isinstance(value, str) or not value.startswith("s3://"):
        raise bad_request("s3_uri must look like s3://bucket/key")
    bucket, _, key = value[5:].partition("/")
    # S3 keys are literal, but refuse dot segments so no client or proxy can normalise
    # a URI out of the allowed prefix.
    segments = key.split("/")
    if not value.startswith(prefix) or "" in segments or "." in segments or ".." in segments:
        raise bad_request(f"s3_uri must name an object under {prefix}")
    return bucket, key


def sniff_image(data: bytes) -> str:
    """The image's media type from its first bytes; 415 for anything we do not classify."""
    if not data:
        raise bad_request("the image is empty")
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    # "BM" alone is too weak a signature: also check the DIB header size field.
    if head[:2] == b"BM" and len(head) >= 15 and head[14] in (12, 40, 52, 56, 108, 124):
        return "image/bmp"
    raise HttpError(415, "UnsupportedMediaType", f"not a supported image; send {FORMATS}")
