"""Shared by the serving tests: one model trained by the real training core on generated
data, one real `dogclf serve` process on a free port, and a small HTTP client.

The fixtures are session-scoped and registered in conftest.py, so the suite trains once and
starts one server, whichever serving test module runs first.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
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
    proc = subprocess.run(
        [sys.executable, "-m", "dogclf.training.train", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
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
    from dogclf.local.serve_process import start_serve

    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    env = clean_env(DOGCLF_CONFIG=str(trained_model.config))
    process = start_serve(str(trained_model.tar), env=env, log_path=log)
    try:
        yield Served(process.url, Client(process.url), log, trained_model)
    finally:
        code = process.stop()
    assert code == 0, log.read_text()[-3000:]


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
