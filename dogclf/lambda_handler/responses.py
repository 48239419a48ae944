"""API-Gateway-shaped responses and the one structured log line per request.

Bodies carry only what the caller needs (predictions, or an error code, message and the
request id): never the Lambda context, the account or an AWS error message verbatim.
Standard library only.
"""

from __future__ import annotations

import json
import sys
from typing import Any

JSON_HEADERS = {"Content-Type": "application/json"}


def response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    headers = dict(JSON_HEADERS)
    if status == 503:
        headers["Retry-After"] = "1"
    return {"statusCode": status, "headers": headers, "body": json.dumps(body)}


def ok(predictions: Any, request_id: str) -> dict[str, Any]:
    return response(200, {"predictions": predictions, "request_id": request_id})


def error(status: int, code: str, message: str, request_id: str) -> dict[str, Any]:
    return response(status, {"error": code, "message": message, "request_id": request_id})


def log_request(record: dict[str, Any]) -> None:
    """One JSON line on stdout, which the Lambda runtime ships to CloudWatch Logs."""
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()
