"""Predictors: one interface for `dogclf predict --via endpoint|local|lambda`.

A predictor classifies a batch of encoded images: `predict(images, top_k)` returns one
top-k list per image, or raises `InputRejected` when the input is refused (a bad image),
which `predict_files` narrows down to the offending file(s). New ways in are one entry in
`PREDICTORS` ("module:Class", imported only when chosen, so `--via endpoint` never imports
torch); the class needs a `from_options(cfg, options)` classmethod.
"""

from __future__ import annotations

import base64
import importlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dogclf.errors import AwsError, DogclfError

if TYPE_CHECKING:
    from contextlib import ExitStack

    from dogclf.config import DogclfConfig
    from dogclf.serving.inference import Classifier

Prediction = list[dict[str, Any]]  # [{"label", "index", "probability"}], best first

PREDICTORS: dict[str, str] = {
    "endpoint": "dogclf.serving.predictors:EndpointPredictor",
    "local": "dogclf.serving.predictors:LocalPredictor",
    "lambda": "dogclf.aws.lambda_predict:LambdaPredictor",
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


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
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise DogclfError(
            f"--via {via} is not available yet in this version of dogclf",
            "use --via endpoint or --via local",
        ) from None
    cls: type[Predictor] = getattr(module, class_name)
    return cls.from_options(cfg, options)


# ---------------------------------------------------------------- files -> results


@dataclass
class ImageResult:
    image: str
    predictions: Prediction | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        return {"image": self.image, "predictions": self.predictions}


@dataclass
class _Batch:
    paths: list[Path] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


def collect_images(inputs: Sequence[Path]) -> list[Path]:
    """Files as given; folders searched recursively for image files, sorted."""
    found: list[Path] = []
    for item in inputs:
        if item.is_dir():
            images = sorted(
                p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
            if not images:
                raise DogclfError(
                    f"no images in {item}", f"it should hold {', '.join(sorted(IMAGE_SUFFIXES))}"
                )
            found += images
        else:
            found.append(item)  # missing/unreadable files are reported per file
    return found


def _batches(predictor: Predictor, paths: Sequence[Path], batch_size: int) -> Iterator[_Batch]:
    """Groups of files up to batch_size, within the predictor's request size cap."""
    cap = predictor.max_request_bytes
    batch = _Batch()
    for path in paths:
        try:
            size = path.stat().st_size
        except OSError:
            size = 0  # reported when read
        if batch.paths and (
            len(batch.paths) >= batch_size
            or (cap is not None and predictor.request_size([*batch.sizes, size]) > cap)
        ):
            yield batch
            batch = _Batch()
        batch.paths.append(path)
        batch.sizes.append(size)
    if batch.paths:
        yield batch


def _read(path: Path, cap: int | None, predictor: Predictor) -> bytes:
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise InputRejected("is a folder, not an image") from None
    except OSError as exc:
        raise InputRejected(exc.strerror or str(exc)) from None
    if not data:
        raise InputRejected("empty file")
    if cap is not None and predictor.request_size([len(data)]) > cap:
        raise InputRejected(
            f"{len(data) / 1e6:.1f} MB is over the {cap / 1e6:.1f} MB request limit of "
            f"--via {predictor.name}"
        )
    return data


def predict_files(
    predictor: Predictor, paths: Sequence[Path], top_k: int, batch_size: int
) -> Iterator[ImageResult]:
    """Results per file, in the order given; a bad file becomes an error result, not a failure."""
    for batch in _batches(predictor, paths, batch_size):
        results: list[ImageResult | None] = [None] * len(batch.paths)
        readable: list[tuple[int, bytes]] = []
        for i, path in enumerate(batch.paths):
            try:
                readable.append((i, _read(path, predictor.max_request_bytes, predictor)))
            except InputRejected as exc:
                results[i] = ImageResult(str(path), error=exc.message)
        if readable:
            named = [(str(batch.paths[i]), data) for i, data in readable]
            for (i, _), result in zip(readable, _classify(predictor, named, top_k), strict=True):
                results[i] = result
        yield from (result for result in results if result is not None)


def _classify(
    predictor: Predictor, named: list[tuple[str, bytes]], top_k: int
) -> list[ImageResult]:
    """One request for the batch; if the model refuses it, one per image to name the bad one."""
    try:
        answers = predictor.predict([data for _, data in named], top_k)
    except InputRejected as exc:
        if len(named) == 1:
            return [ImageResult(named[0][0], error=exc.message)]
        results = []
        for name, data in named:
            try:
                results.append(ImageResult(name, predictions=predictor.predict([data], top_k)[0]))
            except InputRejected as single:
                results.append(ImageResult(name, error=single.message))
        return results
    return [
        ImageResult(name, predictions=predictions)
        for (name, _), predictions in zip(named, answers, strict=True)
    ]


# ---------------------------------------------------------------- the predictors


def rejection_message(original: str) -> str:
    """The container's error body is JSON with a "message"; fall back to the raw text."""
    try:
        document = json.loads(original)
    except ValueError:
        return original
    if isinstance(document, dict) and isinstance(document.get("message"), str):
        return document["message"]
    return original


class EndpointPredictor(Predictor):
    """The deployed SageMaker endpoint, through sagemaker-runtime InvokeEndpoint."""

    name = "endpoint"

    def __init__(self, client: Any, endpoint_name: str, max_request_bytes: int) -> None:
        self.client = client
        self.endpoint_name = endpoint_name
        self.max_request_bytes = max_request_bytes

    @classmethod
    def from_options(cls, cfg: DogclfConfig, options: PredictOptions) -> Predictor:
        from dogclf.aws.session import AwsContext

        client = AwsContext.from_config(cfg).client("sagemaker-runtime")
        cap = int(min(cfg.serving.max_payload_mb, 6.0) * 1024 * 1024)  # AWS caps at 6 MB
        return cls(client, options.endpoint_name or cfg.names.endpoint, cap)

    def predict(self, images: Sequence[bytes], top_k: int) -> list[Prediction]:
        import botocore.exceptions

        from dogclf.aws.session import translate

        body, content_type = json_request(images, top_k)
        what = f"invoke the endpoint {self.endpoint_name}"
        try:
            response = self.client.invoke_endpoint(
                EndpointName=self.endpoint_name,
                Body=body,
                ContentType=content_type,
                Accept="application/json",
                CustomAttributes=f"top_k={top_k}",
            )
            document = json.loads(response["Body"].read())
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ModelError":
                status = int(str(exc.response.get("OriginalStatusCode") or 0))
                message = rejection_message(str(exc.response.get("OriginalMessage") or exc))
                if 400 <= status < 500:
                    raise InputRejected(message) from None
                raise AwsError(
                    f"the endpoint {self.endpoint_name} failed ({status}): {message}",
                    f"see its CloudWatch logs: /aws/sagemaker/Endpoints/{self.endpoint_name}",
                ) from None
            error = translate(exc, what)
            if error.hint == "check the name and region":
                error.hint = "deploy it with `dogclf deploy`, or pass --endpoint-name"
            raise error from None
        except botocore.exceptions.BotoCoreError as exc:
            raise translate(exc, what) from None
        except ValueError:
            raise DogclfError(f"{what}: the answer is not JSON") from None
        return predictions_from_response(document, len(images))


class LocalPredictor(Predictor):
    """The model in this process: the same decode, transform and top-k as the endpoint."""

    name = "local"

    def __init__(self, classifier: Classifier, stack: ExitStack | None = None) -> None:
        self.classifier = classifier
        self._stack = stack

    @classmethod
    def from_options(cls, cfg: DogclfConfig, options: PredictOptions) -> Predictor:
        from contextlib import ExitStack

        from dogclf.errors import require_extra

        require_extra("torch", "torch", "predict --via local")
        from dogclf.serving.inference import Limits, load_classifier
        from dogclf.serving.model_files import load_errors, open_model_dir

        s = cfg.serving
        limits = Limits(
            max_payload_bytes=int(s.max_payload_mb * 1024 * 1024),
            max_image_pixels=s.max_image_pixels,
            top_k=s.top_k,
        )
        stack = ExitStack()
        with stack:
            spec = options.model or "latest"
            model_dir = stack.enter_context(open_model_dir(spec, cfg))
            with load_errors(spec):
                classifier = load_classifier(model_dir, limits=limits)
            return cls(classifier, stack.pop_all())

    def predict(self, images: Sequence[bytes], top_k: int) -> list[Prediction]:
        from dogclf.serving.inference import RequestError

        try:
            return self.classifier.predict(images, top_k)
        except RequestError as exc:
            raise InputRejected(exc.message) from None

    def request_size(self, sizes: Sequence[int]) -> int:
        return sum(sizes)

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
