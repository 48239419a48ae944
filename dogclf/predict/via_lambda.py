"""`dogclf predict --via lambda`: invoke the function's alias with the direct-invoke JSON.

The function answers API-Gateway-shaped responses ({statusCode, headers, body}); a 4xx is
the input's fault (InputRejected: predict names the file), anything else is a service error
carrying the function's request id so its log line can be found.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import botocore.exceptions

from dogclf.aws.session import AwsContext, aws_errors, is_not_found
from dogclf.errors import AwsError, DogclfError
from dogclf.predict.base import (
    InputRejected,
    Prediction,
    PredictOptions,
    Predictor,
    predictions_from_response,
)
from dogclf.units import MiB

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

# Synchronous invoke payloads are capped at 6 MB (6,291,456 bytes); keep room for the JSON.
INVOKE_MAX_BYTES = 6 * MiB - 1024
MAX_IMAGES = 16  # the handler's MAX_IMAGES default


def event_size(sizes: Sequence[int]) -> int:
    """Bytes of {"images": ["<base64>", ...], "top_k": k} (or {"image": ...})."""
    return 64 + sum(4 * math.ceil(n / 3) + 4 for n in sizes)


class LambdaPredictor(Predictor):
    """The deployed function, through its alias (the version lambda-deploy published)."""

    name = "lambda"

    def __init__(self, client: Any, function: str, alias: str, max_image_bytes: int) -> None:
        self.client = client
        self.function = function
        self.alias = alias
        self.max_image_bytes = max_image_bytes  # the handler refuses more (413)
        self.max_request_bytes = INVOKE_MAX_BYTES

    @classmethod
    def from_options(cls, cfg: DogclfConfig, options: PredictOptions) -> Predictor:
        client = AwsContext.from_config(cfg).client("lambda")
        limit = int(cfg.lambda_.max_payload_mb * MiB)
        return cls(client, cfg.names.lambda_function, cfg.lambda_.alias, limit)

    def request_size(self, sizes: Sequence[int]) -> int:
        if sum(sizes) > self.max_image_bytes:
            return INVOKE_MAX_BYTES + 1  # over the handler's limit: split or refuse
        return event_size(sizes)

    def predict(self, images: Sequence[bytes], top_k: int) -> list[Prediction]:
        results: list[Prediction] = []
        for start in range(0, len(images), MAX_IMAGES):
            results += self._invoke(images[start : start + MAX_IMAGES], top_k)
        return results

    def _invoke(self, images: Sequence[bytes], top_k: int) -> list[Prediction]:
        encoded = [base64.b64encode(image).decode("ascii") for image in images]
        event: dict[str, Any] = {"image": encoded[0]} if len(encoded) == 1 else {"images": encoded}
        event["top_k"] = top_k
        answer = self._call(json.dumps(event).encode())
        status = int(answer.get("statusCode", 0))
        try:
            body = json.loads(answer.get("body") or "{}")
        except ValueError:
            body = {}
        if status == 200:
            return predictions_from_response(body, len(images))
        message = str(body.get("message") or f"HTTP {status}")
        if 400 <= status < 500:
            raise InputRejected(message)
        raise AwsError(
            f"the Lambda {self.function}:{self.alias} answered {status} "
            f"{body.get('error', '')}: {message}",
            f"its log group /aws/lambda/{self.function} has the line for request id "
            f"{body.get('request_id', '?')}",
        )

    def _call(self, payload: bytes) -> dict[str, Any]:
        what = f"invoke the Lambda {self.function}:{self.alias}"
        try:
            response = self.client.invoke(
                FunctionName=self.function, Qualifier=self.alias, Payload=payload
            )
        except botocore.exceptions.ClientError as exc:
            if is_not_found(exc):
                raise AwsError(
                    f"cannot {what}: it does not exist", "deploy it with `dogclf lambda-deploy`"
                ) from None
            with aws_errors(what):
                raise
        raw = response["Payload"].read()
        if response.get("FunctionError"):
            detail = _error_message(raw)
            raise AwsError(
                f"the Lambda {self.function} failed: {detail}",
                f"see its log group /aws/lambda/{self.function}",
            )
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or "statusCode" not in answer:
            raise DogclfError(
                f"{what}: unexpected answer {raw[:200]!r}",
                "is it the function `dogclf lambda-deploy` made? run that to replace it",
            )
        return answer


def _error_message(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("errorMessage", raw[:200]))
    except (ValueError, AttributeError):
        return repr(raw[:200])
