"""Predictors: one interface for `dogclf predict --via endpoint|local|lambda`.

A predictor classifies a batch of encoded images: `predict(images, top_k)` returns one
top-k list per image, or raises `InputRejected` when the input is refused (a bad image),
which `predict_files` (files.py) narrows down to the offending file(s). New ways in are one
entry in `PREDICTORS` ("module:Class", imported only when chosen, so `--via endpoint` never
imports torch); the class needs a `from_options(cfg, options)` classmethod.
"""

from __future__ import annotations

import base64
import importlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dogclf.errors import DogclfError

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

Prediction = list[dict[str, Any]]
MESSAGE_CHARS = 300  # of a model's error message quoted to the user  # [{"label", "index", "probability"}], best first

PREDICTORS: dict[str, str] = {
    "endpoint": "dogclf.predict.endpoint:EndpointPredictor",
    "local": "dogclf.predict.local:LocalPredictor",
    "lambda": "dogclf.predict.via_lambda:LambdaPredictor",
}


class InputRejected(DogclfError):
    """The model refused the input (HTTP 4xx): a bad image, not a broken service."""


@dataclass
class PredictOptions:
    model: str | None = None  # --model: path, s3:// URI or "latest" (local)
    endpoint_name: str | None = None  # --endpoint-name (endpoint); default cfg.names.endpoint
    top_k: int = 5
    batch_size: int = 16


class Predictor(ABC):
    """Classifies encoded images; see the module docstring."""

    name: str = "predictor"
    #: request size cap in bytes (None: no cap); `request_size` says what a batch costs
    max_request_bytes: int | None = None

    @classmethod
    @abstractmethod
    def from_options(cls, cfg: DogclfConfig, options: PredictOptions) -> Predictor: ...

    @abstractmethod
    def predict(self, images: Sequence[bytes], top_k: int) -> list[Prediction]:
        """One top-k list per image, in order; InputRejected if the input is refused."""

    def request_size(self, sizes: Sequence[int]) -> int:
        """Bytes on the wire for images of these sizes: JSON with base64 by default."""
        return json_request_size(sizes)

    def close(self) -> None:  # noqa: B027 - most predictors hold nothing
        """Release what the predictor holds (temp dirs, models)."""

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def json_request_size(sizes: Sequence[int]) -> int:
    """{"images": ["<base64>", ...], "top_k": k}; a single image goes raw."""
    if len(sizes) == 1:
        return sizes[0]
    return 64 + sum(4 * math.ceil(n / 3) + 4 for n in sizes)


def json_request(images: Sequence[bytes], top_k: int) -> tuple[bytes, str]:
    """The request body for a batch: raw bytes for one image, base64 JSON for several."""
    if len(images) == 1:
        return bytes(images[0]), "application/x-image"
    document = {"images": [base64.b64encode(b).decode("ascii") for b in images], "top_k": top_k}
    return json.dumps(document).encode(), "application/json"


def predictions_from_response(document: Any, count: int) -> list[Prediction]:
    """{"predictions": [...]} (one image) or {"predictions": [[...], ...]} (a batch)."""
    predictions = document.get("predictions") if isinstance(document, dict) else None
    if not isinstance(predictions, list):
        raise DogclfError(f"unexpected response: {str(document)[:200]}")
    if count == 1 and (not predictions or isinstance(predictions[0], dict)):
        return [predictions]
    if len(predictions) != count:
        raise DogclfError(f"asked about {count} images, got {len(predictions)} answers")
    return predictions


def make_predictor(via: str, cfg: DogclfConfig, options: PredictOptions) -> Predictor:
    if via not in PREDICTORS:
        raise DogclfError(f"unknown --via {via!r}", f"choose one of {', '.join(PREDICTORS)}")
    module_name, class_name = PREDICTORS[via].split(":")
    module = importlib.import_module(module_name)
    cls: type[Predictor] = getattr(module, class_name)
    return cls.from_options(cfg, options)


def rejection_message(original: str) -> str:
    """One clean line from a model server's error body, never a traceback: the JSON
    "message" (`dogclf serve`, TorchServe's own errors), else the first line of the text
    (the PyTorch inference image answers message, newline, traceback:
    sagemaker_inference/transformer.py Transformer.handle_error)."""
    try:
        document = json.loads(original)
    except ValueError:
        document = None
    text = original
    if isinstance(document, dict) and isinstance(document.get("message"), str):
        text = document["message"]
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first[:MESSAGE_CHARS] or "no message"
