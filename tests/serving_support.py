"""Shared by the serving tests: one model trained by the real training core on generated
data, one real `dogclf serve` process on a free port, the same model.tar.gz served by AWS's
PyTorch inference handler service (dogclf/local/pytorch_inference.py), a small HTTP client,
and the corpus of good and bad request bodies.

The fixtures are session-scoped and registered in conftest.py, so the suite trains once and
starts each server once, whichever serving test module runs first.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

IMAGE_SIZE = 48
CLASSES = 3
# What the served test server is configured with (dogclf.toml [serving]): small limits, so
# the bad-input tests need no big payloads.
MAX_PAYLOAD_MB = 1
MAX_IMAGE_PIXELS = 4_000_000


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without AWS, dogclf, SageMaker or torch.distributed settings, with
    dummy credentials and no ~/.aws: nothing can reach a real account."""
    drop = ("AWS_", "DOGCLF_", "SM_", "SAGEMAKER_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class TrainedModel:
    tar: Path  # model.tar.gz as the training core packs it
    extracted: Path  # the same, unpacked (what SageMaker puts in /opt/ml/model)
    data: Path  # the generated dataset it learnt
    labels: list[str]
    config: Path  # a dogclf.toml with the test server's [serving] limits

    def test_images(self) -> list[tuple[Path, str]]:
        """(image, its breed) for every test-split image."""
        return [
            (image, folder.name.split(".", 1)[1])
            for folder in sorted((self.data / "test").iterdir())
            for image in sorted(folder.glob("*.jpg"))
        ]


def train_model(root: Path) -> TrainedModel:
    """The training core's own entry point (`python -m dogclf.training.train --pack`)."""
    from dogclf.training.synthetic import make_dataset

    data = make_dataset(root / "data", classes=CLASSES, per_class=12, size_range=(48, 96), seed=7)
    tar = root / "model.tar.gz"
    args = [
        "--data-dir", str(data), "--model-dir", str(root / "model"),
        "--checkpoint-dir", str(root / "checkpoints"), "--arch", "tiny_cnn", "--epochs", "3",
        "--batch-size", "8", "--image-size", str(IMAGE_SIZE), "--lr", "0.01",
        "--num-workers", "0", "--patience", "0", "--pack", str(tar),
    ]  # fmt: skip
    run_core(args, cwd=root)
    extracted = root / "extracted"
    with tarfile.open(tar) as archive:
        archive.extractall(extracted, filter="data")
    labels = json.loads((extracted / "labels.json").read_text())
    config = root / "dogclf.toml"
    config.write_text(
        f"[serving]\nmax_payload_mb = {MAX_PAYLOAD_MB}\nmax_image_pixels = {MAX_IMAGE_PIXELS}\n"
    )
    return TrainedModel(tar, extracted, data, labels, config)


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """Plain HTTP to a server: what a load balancer or SageMaker's front end sends."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def invoke(self, body: bytes, content_type: str | None, **headers: str) -> Response:
        sent = dict(headers)
        if content_type is not None:
            sent["Content-Type"] = content_type
        return self.request("POST", "/invocations", body, sent)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/stats").json()
        return result


@dataclass
class Served:
    url: str
    client: Client
    log: Path  # the server's stderr
    model: TrainedModel


# ---------------------------------------------------------------- session fixtures


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    return train_model(tmp_path_factory.mktemp("serving-model"))


@pytest.fixture(scope="session")
def served(
    trained_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """`dogclf serve model.tar.gz --port 0`, the real command in a child process."""

    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    with serving(trained_model, log) as server:
        yield server


def run_core(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The training core's own entry point in a child process; it must succeed."""
    proc = subprocess.run(
        [sys.executable, "-m", "dogclf.training.train", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@contextmanager
def serving(trained_model: TrainedModel, log: Path, **settings: str) -> Iterator[Served]:
    """`dogclf serve` of the trained model with `settings` in its environment; exits 0."""
    from dogclf.local.serve_process import start_serve

    env = clean_env(DOGCLF_CONFIG=str(trained_model.config), **settings)
    process = start_serve(str(trained_model.tar), env=env, log_path=log)
    try:
        yield Served(process.url, Client(process.url), log, trained_model)
    finally:
        code = process.stop()
    assert code == 0, log.read_text()[-3000:]


@pytest.fixture(scope="session")
def handler_service(
    trained_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """model.tar.gz as the SageMaker PyTorch inference image serves it: AWS's handler service
    in a child process, in the container environment `dogclf deploy` gives the model (the
    test server's [serving] limits), no dogclf importable there, no torch hub cache."""
    from dogclf.aws.endpoints import model_environment
    from dogclf.config import load_config
    from dogclf.local.serve_process import start_pytorch_inference

    root = tmp_path_factory.mktemp("handler-service")
    container = model_environment(load_config(trained_model.config, {}), "us-east-1")
    # Torch's default threads, as predict --via local has in this process: another count
    # changes the sum order, and so the 6th decimal the tests compare exactly.
    container.pop("OMP_NUM_THREADS", None)
    env = clean_env(**container, TORCH_HOME=str(root / "no-torch-cache"))
    process = start_pytorch_inference(trained_model.tar, root, env=env, log_path=root / "log")
    try:
        yield Served(process.url, Client(process.url), root / "log", trained_model)
    finally:
        code = process.stop()
    assert code == 0, (root / "log").read_text()[-3000:]


# ---------------------------------------------------------------- images in many forms


def encode(image: Any, fmt: str, **options: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def photo(size: tuple[int, int] = (120, 90), seed: int = 0) -> Any:
    """An RGB image with structure in it (so rotations and crops change it)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, (40 + seed * 30 % 200, 120, 200))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.rectangle([w // 8, h // 6, w // 2, h // 2], fill=(230, 60, 30))
    draw.ellipse([w // 2, h // 3, w - 4, h - 4], fill=(20, 200, 90))
    return image


def exif_rotated_png(upright: Any) -> bytes:
    """The pixels stored turned on their side, with EXIF orientation 6 ("rotate 90° clockwise
    to show"): a viewer, and the server, must show `upright` exactly."""
    from PIL import Image

    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    return encode(stored, "PNG", exif=exif.tobytes())


def bomb_png(side: int) -> bytes:
    """A few kB of PNG that decodes to side x side pixels (a decompression bomb)."""
    from PIL import Image

    return encode(Image.new("1", (side, side)), "PNG", optimize=True)


def animated_gif() -> bytes:
    frames = [photo(seed=i).convert("P") for i in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def sixteen_bit_png() -> bytes:
    import numpy as np
    from PIL import Image

    ramp = (np.arange(80 * 60, dtype=np.uint32).reshape(60, 80) * 13 % 65536).astype(np.uint16)
    return encode(Image.fromarray(ramp), "PNG")


# ---------------------------------------------------------------- the request corpus


@dataclass
class Body:
    """One request: body, Content-Type, extra headers; `images` says which images it holds
    (a good body) and `top_k` how many answers each gets."""

    name: str
    body: bytes
    content_type: str | None
    headers: dict[str, str]
    images: list[bytes]
    top_k: int = 5
    batched: bool = False


@dataclass
class BadBody:
    """A request the model must refuse: the status and a phrase of the message."""

    name: str
    body: bytes
    content_type: str | None
    status: int
    phrase: str
    headers: dict[str, str]


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def good_bodies(jpeg: bytes) -> list[Body]:
    """Every way a client may send images: raw bytes under many types, JSON, batches."""
    from PIL import Image

    base = photo((64, 48))
    raw = {
        "png": encode(base, "PNG"),
        "webp": encode(base, "WEBP"),
        "bmp-1bit": encode(base.convert("1"), "BMP"),
        "tiff-I": encode(base.convert("I"), "TIFF"),
        "cmyk-jpeg": encode(base.convert("CMYK"), "JPEG"),
        "rgba-png": encode(base.convert("RGBA"), "PNG"),
        "p+transparency": encode(base.convert("P"), "PNG", transparency=0),
        "16-bit-png": sixteen_bit_png(),
        "exif-rotated": exif_rotated_png(base),
        "animated-gif": animated_gif(),
        "big-jpeg": encode(Image.new("RGB", (900, 700), (90, 30, 200)), "JPEG"),
    }
    bodies = [
        Body(f"raw {name}", data, "application/x-image", {}, [data]) for name, data in raw.items()
    ]
    for content_type in (
        "image/jpeg",
        "image/png",
        "application/octet-stream",
        "Image/JPEG; charset=binary",
        None,
    ):
        bodies.append(Body(f"jpeg as {content_type}", jpeg, content_type, {}, [jpeg]))
    attributes = {"X-Amzn-SageMaker-Custom-Attributes": "trace=1,top_k=3"}
    bodies += [
        Body("custom attribute top_k", jpeg, "image/jpeg", attributes, [jpeg], top_k=3),
        Body("json image", json.dumps({"image": _b64(jpeg), "top_k": 2}).encode(), "application/json", {}, [jpeg], top_k=2),
        Body("json top_k over the attribute", json.dumps({"image": _b64(jpeg), "top_k": 1}).encode(), "application/json", attributes, [jpeg], top_k=1),
        Body("json charset", json.dumps({"image": _b64(jpeg)}).encode(), "application/json; charset=utf-8", {}, [jpeg]),
        Body("json images", json.dumps({"images": [_b64(jpeg), "data:image/png;base64," + _b64(raw["png"])]}).encode(), "application/json", {}, [jpeg, raw["png"]], batched=True),
        Body("accept any", jpeg, "image/jpeg", {"Accept": "*/*"}, [jpeg]),
        Body("accept list", jpeg, "image/jpeg", {"Accept": "text/html, application/json"}, [jpeg]),
    ]  # fmt: skip
    return bodies


def bad_bodies(jpeg: bytes) -> list[BadBody]:
    """Everything the model refuses, with the limits of the test server (MAX_PAYLOAD_MB,
    MAX_IMAGE_PIXELS, the default 64 images per request)."""
    from PIL import Image

    limit = MAX_PAYLOAD_MB * 1024 * 1024
    cases = [
        ("text", b"x", "text/plain", 415, "not supported"),
        ("pdf", b"%PDF-1.4", "application/pdf", 415, "not supported"),
        ("empty", b"", "image/jpeg", 400, "empty request body"),
        ("not json", b"{not json", "application/json", 400, "not valid JSON"),
        ("json list", b"[1, 2]", "application/json", 400, "must be an object"),
        ("no image", b'{"top_k": 3}', "application/json", 400, "no image"),
        ("bad base64", b'{"image": "@@@"}', "application/json", 400, "not valid base64"),
        ("image not a string", b'{"image": 42}', "application/json", 400, "base64 string"),
        ("empty image", b'{"image": ""}', "application/json", 400, "is empty"),
        ("empty images", b'{"images": []}', "application/json", 400, "non-empty list"),
        ("65 images", json.dumps({"images": ["AA=="] * 65}).encode(), "application/json", 413, "the limit is 64"),
        ("top_k 0", b'{"image": "AA==", "top_k": 0}', "application/json", 400, "between 1 and"),
        ("top_k bool", b'{"image": "AA==", "top_k": true}', "application/json", 400, "integer"),
        ("too large", b"x" * (limit + 1), "image/jpeg", 413, f"the limit is {limit:,}"),
        ("url off", b'{"url": "http://169.254.169.254/"}', "application/json", 400, "turned off"),
        ("text as jpeg", b"just some text", "image/jpeg", 400, "not an image"),
        ("html as jpeg", b"<!doctype html><html><body>hi</body></html>", "image/jpeg", 400, "not an image"),
        ("eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "application/x-image", 400, "not an image"),
        ("truncated jpeg", encode(photo((200, 150)), "JPEG")[:600], "image/jpeg", 400, "truncated"),
        ("bomb", bomb_png(10_000), "image/png", 413, "decompression bomb"),
        ("over the pixel limit", bomb_png(2_100), "image/png", 413, "above the limit of 4,000,000"),
        ("a line", encode(Image.new("RGB", (20_000, 1)), "PNG"), "image/png", 400, "more than 20 times"),
        ("one bad in a batch", json.dumps({"images": [_b64(jpeg), _b64(b"nope")]}).encode(), "application/json", 400, "images[1]: "),
    ]  # fmt: skip
    bad = [BadBody(name, body, ct, status, phrase, {}) for name, body, ct, status, phrase in cases]
    bad += [
        BadBody("bad top_k attribute", jpeg, "image/jpeg", 400, "custom attribute top_k", {"X-Amzn-SageMaker-Custom-Attributes": "top_k=abc"}),
        BadBody("accept csv", jpeg, "image/jpeg", 406, "cannot answer with 'text/csv'", {"Accept": "text/csv"}),
    ]  # fmt: skip
    return bad


# Decoded by sagemaker_inference/transformer.py before input_fn runs (application/json is
# one of its UTF8_TYPES): a non-UTF-8 body is a 500 inside AWS's toolkit, which dogclf's
# clients never send (they build the JSON themselves, ASCII base64).
NON_UTF8_JSON = b'{"image": "\xff\xfe"}'


def crashing_model(model_dir: Path, dest: Path) -> Path:
    """A copy of the model whose code/inference.py crashes in predict_fn (a bug in the user
    script, as a model crash happens on SageMaker): every request is the toolkit's 500."""
    import shutil

    shutil.copytree(model_dir, dest)
    with (dest / "code" / "inference.py").open("a", encoding="utf-8") as script:
        script.write(
            "\n\ndef predict_fn(input_data, model, context=None):\n"
            "    raise RuntimeError('the model crashed')\n"
        )
    return dest
