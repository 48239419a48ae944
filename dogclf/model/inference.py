"""SageMaker PyTorch inference handlers, and the request/model pieces `dogclf serve` shares.

STANDALONE FILE: the training core copies it into model.tar.gz as `code/inference.py`,
beside `code/preprocess.py` and `code/network.py`. Inside the SageMaker PyTorch inference
container `dogclf` is not installed, so this file imports only the standard library, torch
and those two siblings (as top-level modules there, from the package here).

The container calls, per request: model_fn(model_dir) once, then
input_fn(body, content_type) -> predict_fn(data, model) -> output_fn(prediction, accept).
`dogclf serve` runs the same pieces, but decodes in request threads and batches the forward
passes of concurrent requests (dogclf/serving/server.py).

Limits come from the same variables as dogclf.toml overrides (DOGCLF_SERVING__MAX_PAYLOAD_MB,
DOGCLF_SERVING__MAX_IMAGE_PIXELS, DOGCLF_SERVING__TOP_K, DOGCLF_SERVING__URL_ALLOW_HOSTS), so
the endpoint's environment can set them.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from dogclf.config import ServingSection

try:  # inside the package
    from dogclf.model import network, preprocess, quantize
except ImportError:  # inside the container: code/ is on sys.path, dogclf is not
    import network  # type: ignore[no-redef]
    import preprocess  # type: ignore[no-redef]
    import quantize  # type: ignore[no-redef]

log = logging.getLogger("dogclf.inference")

# Not dogclf.units.MiB: this file also runs in the container as code/inference.py, where
# dogclf is not installed.
MiB = 1024 * 1024

MODEL_FORMAT_VERSION = 1
# Raw image bodies; octet-stream and a missing Content-Type are sniffed by Pillow too.
IMAGE_TYPES = frozenset(
    {
        "image/jpeg",
        "image/jpg",
        "image/png",
        "image/webp",
        "image/gif",
        "image/bmp",
        "image/tiff",
        "application/x-image",
        "application/octet-stream",
        "",
    }
)
JSON_TYPE = "application/json"
JSON_ACCEPT = frozenset({"", "*/*", "application/*", JSON_TYPE})
MAX_TOP_K = 1000


# ---------------------------------------------------------------- errors

try:  # in the container, the toolkit turns these into the HTTP status instead of a 500
    from sagemaker_inference.errors import (  # type: ignore[import-not-found]
        GenericInferenceToolkitError as _ToolkitError,
    )
except ImportError:

    class _ToolkitError(Exception):  # type: ignore[no-redef]
        def __init__(self, status_code: int, message: str | None = None, phrase: str | None = None):
            self.status_code = status_code
            self.message = message or "Invalid Request"
            self.phrase = phrase or self.message
            super().__init__(status_code, self.message, self.phrase)


class RequestError(_ToolkitError):
    """The request is wrong (not the server): answered with `status` and the message."""

    status = 400
    reason = "Bad Request"

    def __init__(self, message: str) -> None:
        super().__init__(self.status, message, self.reason)
        self.message = message

    def __str__(self) -> str:
        return self.message


class PayloadTooLargeError(RequestError):
    status = 413
    reason = "Payload Too Large"


class UnsupportedMediaTypeError(RequestError):
    status = 415
    reason = "Unsupported Media Type"


class NotAcceptableError(RequestError):
    status = 406
    reason = "Not Acceptable"


# ---------------------------------------------------------------- limits


@dataclass(frozen=True)
class Limits:
    max_payload_bytes: int = 6 * MiB
    max_image_pixels: int = preprocess.DEFAULT_MAX_PIXELS
    max_images: int = 64  # per request
    top_k: int = 5
    url_allow_hosts: tuple[str, ...] = ()  # empty: {"url": ...} is refused (no SSRF)

    @classmethod
    def from_serving(cls, serving: ServingSection) -> Limits:
        """dogclf.toml's `[serving]` limits (`serve`, `predict --via local`)."""
        return cls(
            max_payload_bytes=int(serving.max_payload_mb * MiB),
            max_image_pixels=serving.max_image_pixels,
            top_k=serving.top_k,
            url_allow_hosts=tuple(h.lower() for h in serving.url_allow_hosts),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        env = os.environ if environ is None else environ
        prefix = "DOGCLF_SERVING__"
        hosts = env.get(prefix + "URL_ALLOW_HOSTS", "").strip()
        host_list = json.loads(hosts) if hosts.startswith("[") else hosts.split(",")
        return cls(
            max_payload_bytes=int(float(env.get(prefix + "MAX_PAYLOAD_MB", 6)) * MiB),
            max_image_pixels=int(env.get(prefix + "MAX_IMAGE_PIXELS", cls.max_image_pixels)),
            top_k=int(env.get(prefix + "TOP_K", cls.top_k)),
            url_allow_hosts=tuple(h.strip().lower() for h in host_list if h.strip()),
        )


# ---------------------------------------------------------------- requests


@dataclass
class ParsedRequest:
    images: list[bytes]
    top_k: int
    batched: bool  # {"images": [...]}: answer with one list of predictions per image


def media_type(header: str | None) -> str:
    """'Image/JPEG; charset=x' -> 'image/jpeg'."""
    return (header or "").split(";", 1)[0].strip().lower()


def parse_top_k(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RequestError(f"{where} must be an integer between 1 and {MAX_TOP_K}")
    try:
        k = int(value)
    except ValueError:
        raise RequestError(f"{where} must be an integer between 1 and {MAX_TOP_K}") from None
    if not 1 <= k <= MAX_TOP_K:
        raise RequestError(f"{where} must be an integer between 1 and {MAX_TOP_K}, got {k}")
    return k


def top_k_from_attributes(custom_attributes: str | None, default: int) -> int:
    """X-Amzn-SageMaker-Custom-Attributes may carry `top_k=3` (comma/semicolon separated)."""
    for part in (custom_attributes or "").replace(";", ",").split(","):
        key, _, value = part.partition("=")
        if key.strip().lower() == "top_k":
            return parse_top_k(value.strip(), "custom attribute top_k")
    return default


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise RequestError(f"{where} must be a base64 string")
    if value.startswith("data:") and "," in value:  # a data: URL from a browser
        value = value.split(",", 1)[1]
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{where} is not valid base64") from None
    if not data:
        raise RequestError(f"{where} is empty")
    return data


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect could leave the allow-list


def fetch_url(url: Any, limits: Limits) -> bytes:
    """{"url": ...}: only http(s) hosts on the allow-list, no redirects, size-capped."""
    if not limits.url_allow_hosts:
        raise RequestError(
            'URL input is turned off on this endpoint; send the image bytes (or {"image": '
            '"<base64>"}) instead'
        )
    parts = urllib.parse.urlsplit(url if isinstance(url, str) else "")
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or host not in limits.url_allow_hosts:
        raise RequestError(f"url host {host or url!r} is not on the allow-list")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=10) as resp:
            data: bytes = resp.read(limits.max_payload_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RequestError(f"could not fetch the url: {exc}") from None
    if len(data) > limits.max_payload_bytes:
        raise PayloadTooLargeError(f"the image at url is over {limits.max_payload_bytes:,} bytes")
    return data


def _parse_json(body: bytes, limits: Limits, top_k: int) -> ParsedRequest:
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise RequestError(
            'body is not valid JSON; send {"image": "<base64>"} or {"images": [...]}'
        ) from None
    if not isinstance(doc, dict):
        raise RequestError(
            'JSON body must be an object: {"image": "<base64>"} or {"images": [...]}'
        )
    if "top_k" in doc:
        top_k = parse_top_k(doc["top_k"], "top_k")
    if "images" in doc:
        items = doc["images"]
        if not isinstance(items, list) or not items:
            raise RequestError('"images" must be a non-empty list of base64 strings')
        if len(items) > limits.max_images:
            raise PayloadTooLargeError(
                f"{len(items)} images in one request; the limit is {limits.max_images}"
            )
        return ParsedRequest([_b64(v, f"images[{i}]") for i, v in enumerate(items)], top_k, True)
    if "image" in doc:
        return ParsedRequest([_b64(doc["image"], '"image"')], top_k, False)
    if "url" in doc:
        return ParsedRequest([fetch_url(doc["url"], limits)], top_k, False)
    raise RequestError('JSON body has no image: send {"image": "<base64>"} or {"images": [...]}')


def parse_request(
    body: bytes | bytearray | str,
    content_type: str | None,
    limits: Limits,
    custom_attributes: str | None = None,
) -> ParsedRequest:
    """Body + headers -> image bytes to classify; RequestError (4xx) for anything wrong."""
    if isinstance(body, str):  # the toolkit hands JSON over as text
        body = body.encode("utf-8")
    if len(body) > limits.max_payload_bytes:
        raise PayloadTooLargeError(
            f"request body is {len(body):,} bytes; the limit is {limits.max_payload_bytes:,}"
        )
    top_k = top_k_from_attributes(custom_attributes, limits.top_k)
    kind = media_type(content_type)
    if kind == JSON_TYPE:
        return _parse_json(bytes(body), limits, top_k)
    if kind in IMAGE_TYPES:
        if not body:
            raise RequestError("empty request body: send the image bytes")
        return ParsedRequest([bytes(body)], top_k, False)
    raise UnsupportedMediaTypeError(
        f"content type {kind!r} is not supported; send image/jpeg, image/png, image/webp, "
        "application/x-image, or application/json with base64 images"
    )


# ---------------------------------------------------------------- the model


def pick_device(context: Any = None) -> torch.device:
    """The GPU a model server's worker was given, else the first GPU, else the CPU.

    TorchServe runs one worker process per GPU on a multi-GPU instance and tells each its
    own in the context (system_properties["gpu_id"], as its base handler reads it); without
    that every worker would load its copy onto GPU 0 and leave the others idle."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    properties = getattr(context, "system_properties", None) or {}
    gpu_id = properties.get("gpu_id") if isinstance(properties, dict) else None
    if gpu_id is None or not str(gpu_id).isdigit():
        return torch.device("cuda")
    return torch.device(f"cuda:{int(gpu_id) % torch.cuda.device_count()}")


PRECISIONS = ("auto", "fp32", "bf16", "int8")


def pick_precision(device: torch.device, precision: str, model_dir: Path) -> str:
    """What to run: "int8", "bf16" or "fp32". "auto" on a CPU: int8 where the artifact marks
    it usable and the CPU runs it faster than fp32 (quantize.cpu_int8_fast), else as
    pick_dtype. int8 never on a GPU; asked for but not usable: fp32, said in the log."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision not in ("auto", "int8"):
        return precision
    usable = quantize.int8_usable(model_dir)
    if device.type == "cpu" and usable and (precision == "int8" or quantize.cpu_int8_fast()):
        return "int8"
    if precision == "int8":
        why = "a GPU" if device.type != "cpu" else "not usable in this artifact"
        log.warning("int8 asked for but %s (precisions.json): serving fp32", why)
        return "fp32"
    return "bf16" if pick_dtype(device) == torch.bfloat16 else "fp32"


def load_int8(model_dir: Path, image_size: int) -> torch.nn.Module | None:
    """model_int8.pt run once on a dummy batch; None (fp32, said in the log) when this torch
    cannot load or run it: a missing or damaged file, an older TorchScript reader."""
    try:
        return quantize.load_int8(model_dir / quantize.INT8_FILE, image_size)
    except Exception as exc:  # torch.jit.load raises many kinds
        log.warning("int8 model does not load here (%s: %s): serving fp32", type(exc).__name__, exc)
        return None


def pick_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """The network's dtype. "auto": bf16 on a CPU that multiplies bf16 in hardware (AVX512-BF16,
    AMX), where it is about twice the fp32 forward pass (bench/serve_throughput.py), as the
    training core's frozen backbone already runs there; fp32 everywhere else."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "int8":  # the int8 network takes fp32 input
        return torch.float32
    if precision == "bf16" or (
        precision == "auto" and device.type == "cpu" and network.cpu_has_native_bf16()
    ):
        return torch.bfloat16
    return torch.float32


class Classifier:
    """The network, its labels and its eval transform, ready for inference."""

    def __init__(
        self,
        model: torch.nn.Module,
        labels: list[str],
        *,
        arch: str,
        image_size: int,
        device: torch.device,
        limits: Limits,
        precision: str | None = None,  # None: fp32 or bf16 by dtype
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.model = model
        self.labels = labels
        self.arch = arch
        self.image_size = image_size
        self.device = device
        self.limits = limits
        self.dtype = dtype
        self._precision = precision
        # The eval transform in two halves (one definition, preprocess.eval_transform):
        # resize + crop per image (a decode thread), normalisation once per batch.
        self.resize_crop = preprocess.resize_crop(image_size)
        self.normalize = preprocess.normalize()
        # libjpeg may decode big photos at 1/2..1/8 scale, never below the resize target.
        self.draft_size = preprocess.resize_size(image_size)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def precision(self) -> str:
        if self._precision is not None:
            return self._precision
        return "bf16" if self.dtype == torch.bfloat16 else "fp32"

    def prepare(self, data: bytes, where: str | None = None) -> torch.Tensor:
        """Bytes -> resized, cropped uint8 (C, H, W) pixels; 400 for a bad image, 413 too big.

        `where` ("images[2]") prefixes error messages in multi-image requests.
        """
        prefix = f"{where}: " if where else ""
        try:
            decoded = preprocess.decode_pixels(
                data, max_pixels=self.limits.max_image_pixels, draft_size=self.draft_size
            )
        except preprocess.ImageTooLargeError as exc:
            raise PayloadTooLargeError(f"{prefix}{exc}") from None
        except preprocess.ImageDecodeError as exc:
            raise RequestError(f"{prefix}{exc}") from None
        pixels: torch.Tensor = self.resize_crop(decoded)
        return pixels

    def to_batch(self, pixels: Sequence[torch.Tensor]) -> torch.Tensor:
        """Pixels from `prepare` -> normalised NCHW batch in the network's dtype (normalised in
        fp32 first, as eval_transform does; channels_last in memory)."""
        # Stacked as (N, H, W, C), so the NCHW view is channels_last, as the network runs.
        batch = torch.stack([p.permute(1, 2, 0) for p in pixels]).permute(0, 3, 1, 2)
        return self.normalize(batch.to(self.device, non_blocking=True)).to(self.dtype)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Normalised NCHW batch -> softmax probabilities (N, classes) on the CPU."""
        with torch.inference_mode():
            x = batch.contiguous(memory_format=torch.channels_last)
            return torch.softmax(self.model(x).float(), dim=1).cpu()

    def probabilities(self, pixels: Sequence[torch.Tensor]) -> torch.Tensor:
        with torch.inference_mode():
            return self.forward(self.to_batch(pixels))

    def top_k(self, probs: torch.Tensor, k: int) -> list[list[dict[str, Any]]]:
        k = min(k, probs.shape[1])
        values, indices = probs.topk(k, dim=1)
        return [
            [
                {"label": self.labels[i], "index": i, "probability": round(p, 6)}
                for p, i in zip(row_p, row_i, strict=True)
            ]
            for row_p, row_i in zip(values.tolist(), indices.tolist(), strict=True)
        ]

    def predict(
        self, images: Sequence[bytes], top_k: int, batch_size: int = 16
    ) -> list[list[dict[str, Any]]]:
        """Top-k per image, in order; raises RequestError naming the first bad image."""
        many = len(images) > 1
        tensors = [
            self.prepare(data, f"images[{i}]" if many else None) for i, data in enumerate(images)
        ]
        results: list[list[dict[str, Any]]] = []
        for start in range(0, len(tensors), batch_size):
            results += self.top_k(self.probabilities(tensors[start : start + batch_size]), top_k)
        return results


def optimize_for_cpu(
    net: torch.nn.Module, image_size: int, dtype: torch.dtype = torch.float32
) -> torch.nn.Module:
    """TorchScript freeze + optimize_for_inference: batch norm folded into the convolutions
    and oneDNN weights pre-packed, about 20% less CPU per image for resnet50 than eager
    mode (bench/serve_throughput.py). A network that cannot be traced stays eager."""
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python control flow
            example = torch.zeros(1, 3, image_size, image_size, dtype=dtype)
            traced = torch.jit.trace(net, example, check_trace=False)
            optimized: torch.nn.Module = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
            optimized(example)
            return optimized
    except Exception:
        return net


def load_classifier(
    model_dir: str | Path,
    *,
    device: torch.device | None = None,
    limits: Limits | None = None,
    optimize: bool = True,
    precision: str = "auto",
) -> Classifier:
    """model.pt + labels.json -> Classifier in eval mode. Never downloads weights.

    `optimize`: on CPU, run a frozen TorchScript version of the network (optimize_for_cpu).
    `precision`: "auto", "fp32", "bf16" or "int8" (pick_precision); int8 runs
    model_int8.pt and falls back to fp32 (in the log) when it does not load here.
    """
    model_dir = Path(model_dir)
    weights, labels_file = model_dir / "model.pt", model_dir / "labels.json"
    for needed in (weights, labels_file):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} is missing: not a dogclf model directory")
    checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    version = checkpoint.get("format_version") if isinstance(checkpoint, dict) else None
    if version != MODEL_FORMAT_VERSION:
        raise ValueError(
            f"{weights}: format_version {version!r}, expected {MODEL_FORMAT_VERSION}; "
            "retrain or repack the model with this dogclf version"
        )
    labels = json.loads(labels_file.read_text(encoding="utf-8"))
    num_classes = int(checkpoint["num_classes"])
    if not isinstance(labels, list) or len(labels) != num_classes:
        raise ValueError(f"{labels_file} must list {num_classes} labels")
    device = device or pick_device()
    chosen = pick_precision(device, precision, model_dir)
    image_size = int(checkpoint["image_size"])
    int8 = load_int8(model_dir, image_size) if chosen == "int8" else None
    chosen = "int8" if int8 is not None else "fp32" if chosen == "int8" else chosen
    dtype = pick_dtype(device, chosen)
    net = int8 or fp_network(checkpoint, num_classes, device, dtype, optimize)
    return Classifier(
        net,
        [str(label) for label in labels],
        arch=str(checkpoint["arch"]),
        image_size=int(checkpoint["image_size"]),
        device=device,
        limits=limits or Limits(),
        dtype=dtype,
        precision=chosen,
    )


def fp_network(
    checkpoint: Mapping[str, Any],
    num_classes: int,
    device: torch.device,
    dtype: torch.dtype,
    optimize: bool,
) -> torch.nn.Module:
    net = network.build_model(str(checkpoint["arch"]), num_classes, pretrained=False)
    net.load_state_dict(checkpoint["state_dict"])
    # channels_last lets oneDNN (CPU) and cuDNN pick their fastest convolution kernels.
    net = net.eval().to(device, dtype, memory_format=torch.channels_last)  # type: ignore[call-overload]
    if optimize and device.type == "cpu":
        net = optimize_for_cpu(net, int(checkpoint["image_size"]), dtype)
    return net


# ---------------------------------------------------------------- responses


def response_document(predictions: list[list[dict[str, Any]]], batched: bool) -> dict[str, Any]:
    return {"predictions": predictions if batched else predictions[0]}


def encode_response(document: Any, accept: str | None) -> tuple[bytes, str]:
    """JSON is the only output; any Accept that allows it is fine, others get 406."""
    accepted = {media_type(part) for part in (accept or "").split(",")}
    if not accepted & JSON_ACCEPT:
        raise NotAcceptableError(f"cannot answer with {accept!r}; responses are {JSON_TYPE}")
    return json.dumps(document).encode("utf-8"), JSON_TYPE


# ---------------------------------------------------------------- SageMaker handlers


@functools.cache
def _container_limits() -> Limits:
    return Limits.from_env()


def model_fn(model_dir: str, context: Any = None) -> Classifier:
    return load_classifier(model_dir, device=pick_device(context), limits=_container_limits())


def input_fn(request_body: Any, request_content_type: str, context: Any = None) -> Any:
    if isinstance(request_body, dict | list):  # a serving stack that parsed the JSON already
        request_body = json.dumps(request_body)
    attributes = custom_attributes(context)
    return parse_request(request_body, request_content_type, _container_limits(), attributes)


def custom_attributes(context: Any) -> str | None:
    """X-Amzn-SageMaker-Custom-Attributes of the request, from the TorchServe context the
    handler service passes (ts/context.py: request_processor[0] holds the request headers;
    sagemaker_inference/transformer.py hands input_fn that context when it takes three
    arguments). None outside such a stack."""
    processors = getattr(context, "request_processor", None)
    if not processors:
        return None
    headers = processors[0].get_request_properties() or {}
    for key, value in headers.items():
        if str(key).lower() == "x-amzn-sagemaker-custom-attributes" and isinstance(value, str):
            return value
    return None


def predict_fn(input_data: ParsedRequest, model: Classifier, context: Any = None) -> Any:
    return response_document(model.predict(input_data.images, input_data.top_k), input_data.batched)


def output_fn(prediction: Any, accept: str, context: Any = None) -> tuple[bytes, str]:
    return encode_response(prediction, accept)
