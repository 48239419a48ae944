"""code/inference.py as the SageMaker PyTorch container runs it: the whole corpus of good and
bad request bodies through AWS's handler service (sagemaker-pytorch-inference, in a child
process, dogclf not importable there), the handlers from the extracted tarball without dogclf
or a network, and the pieces they share with `dogclf serve`: decoding, the eval transform,
request parsing, limits."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from serving_support import (
    MAX_IMAGE_PIXELS,
    NON_UTF8_JSON,
    Served,
    TrainedModel,
    animated_gif,
    bad_bodies,
    bomb_png,
    clean_env,
    encode,
    exif_rotated_png,
    good_bodies,
    photo,
    sixteen_bit_png,
)

from dogclf.model import inference, preprocess
from dogclf.model.inference import Limits, RequestError, parse_request

pytestmark = pytest.mark.slow

# Run in a fresh interpreter, from a folder that is not the checkout, as the container does:
# code/ on sys.path, the model in model_dir. Whatever could find dogclf (the venv's editable
# install, a path entry holding the package) is removed first, and the network is cut, so
# the handlers prove they need neither.
CONTAINER_PROBE = r"""
import base64, importlib.util, json, os, socket, sys
from importlib.machinery import PathFinder

sys.meta_path[:] = [
    f for f in sys.meta_path if f is PathFinder or f.find_spec("dogclf", None) is None
]
sys.path[:] = [p for p in sys.path if not os.path.isdir(os.path.join(p or ".", "dogclf"))]
assert importlib.util.find_spec("dogclf") is None, "dogclf is still importable"

def no_network(*args, **kwargs):
    raise OSError("the network is cut in this test")
socket.socket.connect = no_network
socket.create_connection = no_network

model_dir, image_path = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(model_dir, "code"))
import inference  # what the toolkit imports: code/inference.py

class Context:  # the toolkit passes one to handlers whose signature takes it
    system_properties = {}

ctx = Context()
model = inference.model_fn(model_dir, ctx)
image = open(image_path, "rb").read()

def call(body, content_type, accept="application/json"):
    data = inference.input_fn(body, content_type, ctx)
    prediction = inference.predict_fn(data, model, ctx)
    payload, out_type = inference.output_fn(prediction, accept, ctx)
    return json.loads(payload), out_type

single, out_type = call(image, "image/jpeg")
batch, _ = call(
    json.dumps({"images": [base64.b64encode(image).decode()] * 2, "top_k": 2}), "application/json"
)
print(json.dumps({
    "single": single,
    "batch": batch,
    "content_type": out_type,
    "training": bool(getattr(model.model, "training", False)),
    "device": str(model.device),
    "dogclf_modules": sorted(m for m in sys.modules if m.split(".")[0] == "dogclf"),
    "code_modules": sorted(
        m for m in ("inference", "preprocess", "network", "archs")
        if getattr(sys.modules.get(m), "__file__", "").startswith(os.path.join(model_dir, "code"))
    ),
}))
"""


def test_container_handlers_run_from_the_tarball_without_dogclf(
    trained_model: TrainedModel, tmp_path: Path
) -> None:
    model_dir = tmp_path / "opt" / "ml" / "model"
    with tarfile.open(trained_model.tar) as archive:
        archive.extractall(model_dir, filter="data")
    probe = tmp_path / "probe.py"
    probe.write_text(CONTAINER_PROBE)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    image, breed = trained_model.test_images()[0]
    env = clean_env(TORCH_HOME=str(tmp_path / "no-torch-cache"))
    proc = subprocess.run(
        [sys.executable, "-I", str(probe), str(model_dir), str(image)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["dogclf_modules"] == []
    assert out["code_modules"] == ["archs", "inference", "network", "preprocess"]
    assert out["training"] is False and out["device"] == "cpu"
    assert out["content_type"] == "application/json"

    # One image: a top-5 list (3 classes: all of them), best first, the right breed on top.
    single = out["single"]["predictions"]
    assert single[0]["label"] == breed
    assert sorted(p["index"] for p in single) == [0, 1, 2]
    assert all(single[i]["probability"] >= single[i + 1]["probability"] for i in range(2))
    assert sum(p["probability"] for p in single) == pytest.approx(1, abs=1e-4)
    # A batch: one top_k list per image.
    assert [len(row) for row in out["batch"]["predictions"]] == [2, 2]

    # The same answer as this package's own loader (what `dogclf serve` and predict run).
    classifier = inference.load_classifier(trained_model.extracted)
    expected = classifier.predict([image.read_bytes()], 5)[0]
    assert [p["index"] for p in single] == [p["index"] for p in expected]
    assert [p["probability"] for p in single] == pytest.approx(
        [p["probability"] for p in expected], abs=1e-5
    )


# ---------------------------------------------------------------- through the handler service


def predict_via_local(model: TrainedModel, images: list[bytes], folder: Path) -> list[Any]:
    """`dogclf predict FILES --via local --json`: what the handler service must equal."""
    from typer.testing import CliRunner

    from dogclf.cli import app

    folder.mkdir()
    files = []
    for i, data in enumerate(images):
        files.append(folder / f"{i:02d}.img")
        files[-1].write_bytes(data)
    args = ["--config", str(model.config), "predict", *map(str, files), "--via", "local"]
    result = CliRunner().invoke(app, [*args, "--model", str(model.tar), "--json"])
    assert result.exit_code == 0, result.output
    return [row["predictions"] for row in json.loads(result.stdout)]


def test_every_good_body_through_the_handler_service_equals_predict_via_local(
    handler_service: Served, tmp_path: Path
) -> None:
    model = handler_service.model
    bodies = good_bodies(model.test_images()[0][0].read_bytes())
    images = list({image: None for body in bodies for image in body.images})
    expected = dict(zip(images, predict_via_local(model, images, tmp_path / "files"), strict=True))
    for body in bodies:
        answer = handler_service.client.invoke(body.body, body.content_type, **body.headers)
        assert answer.status == 200, (body.name, answer.body[:300])
        assert answer.headers["content-type"] == "application/json", body.name
        rows = [expected[image][: body.top_k] for image in body.images]
        # Both serve int8 where the model allows (auto); its fp32 head gives last-digit
        # differences between a batch of one (here) and a batch of many (predict).
        assert_same_predictions(answer.json(), rows if body.batched else rows[0], body.name)


def assert_same_predictions(document: Any, expected: list[Any], where: str) -> None:
    """Labels and order exactly, probabilities to 1e-5 (as the other serving tests)."""
    assert set(document) == {"predictions"}, where
    got, want = document["predictions"], expected
    got_rows = got if got and isinstance(got[0], list) else [got]
    want_rows = want if want and isinstance(want[0], list) else [want]
    keys = [[(p["label"], p["index"]) for p in row] for row in got_rows]
    assert keys == [[(p["label"], p["index"]) for p in row] for row in want_rows], where
    probabilities = [p["probability"] for row in got_rows for p in row]
    assert probabilities == pytest.approx(
        [p["probability"] for row in want_rows for p in row], abs=1e-5
    ), where


def test_every_bad_body_gets_the_toolkits_4xx_in_plain_text(handler_service: Served) -> None:
    """AWS's Transformer.handle_error: the exception's status_code and phrase, and a body of
    the message, a newline and the whole traceback; TorchServe sets no Content-Type."""
    jpeg = handler_service.model.test_images()[0][0].read_bytes()
    for case in bad_bodies(jpeg):
        answer = handler_service.client.invoke(case.body, case.content_type, **case.headers)
        assert answer.status == case.status, (case.name, answer.body[:300])
        assert "content-type" not in answer.headers, case.name
        message, _, trace = answer.body.decode().partition("\n")
        assert case.phrase in message, (case.name, message)
        assert trace.startswith("Traceback (most recent call last):"), case.name
    # Still serving after all of them.
    assert handler_service.client.request("GET", "/ping").json() == {"status": "Healthy"}


def test_non_utf8_json_is_a_500_inside_the_toolkit(handler_service: Served) -> None:
    """AWS's behaviour, recorded: transformer.py decodes application/json bodies as UTF-8
    before input_fn, outside any handler of dogclf's, so the container answers 500. The
    clients never send such a body (test_lambda_handler, test_predict)."""
    answer = handler_service.client.invoke(NON_UTF8_JSON, "application/json")
    assert answer.status == 500
    message, _, trace = answer.body.decode().partition("\n")
    assert "codec can't decode byte 0xff" in message
    assert 'input_data = input_data.decode("utf-8")' in trace and "code/inference.py" not in trace


# ---------------------------------------------------------------- one eval transform


def test_serving_preprocessing_is_the_training_eval_transform() -> None:
    """What `prepare` + `to_batch` feed the network equals the training core's
    eval_transform on the same decoded image (large JPEGs decode in draft mode in both)."""
    from dogclf.model.inference import Classifier

    classifier = Classifier(
        torch.nn.Identity(),
        ["a"],
        arch="x",
        image_size=224,
        device=torch.device("cpu"),
        limits=Limits(),
    )
    transform = preprocess.eval_transform(224)
    samples = [
        encode(photo((640, 480)), "JPEG", quality=90),  # draft-decoded at 1/2
        encode(photo((300, 500), seed=2), "JPEG"),
        encode(photo((230, 230), seed=3).convert("RGBA"), "PNG"),
    ]
    served = classifier.to_batch([classifier.prepare(s) for s in samples])
    trained = torch.stack(
        [
            transform(preprocess.decode_image(s, draft_size=preprocess.resize_size(224)))
            for s in samples
        ]
    )
    assert served.shape == trained.shape == (3, 3, 224, 224)
    assert torch.allclose(served, trained, atol=1e-6)


def test_the_tensor_resize_stays_within_a_level_of_pillows() -> None:
    """resize_crop runs torch's uint8 resize on the decoded pixels; the ImageNet recipe the
    pretrained weights expect is Pillow's bilinear resize then a centre crop. On noise (the
    hardest case for rounding) and on shapes down- and up-scaled, odd and even, the two
    differ by at most one level, on under 1% of the values (measured: 0.04% on photos)."""
    import numpy as np
    from torchvision.transforms import v2 as T

    pillow = T.Compose([T.Resize(256, antialias=True), T.CenterCrop(224)])
    ours = preprocess.resize_crop(224)
    rng = np.random.default_rng(0)
    for width, height in [(300, 500), (641, 479), (256, 256), (230, 1200), (1999, 257)]:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        expected = torch.from_numpy(np.array(pillow(image))).permute(2, 0, 1).int()
        got = ours(preprocess.to_pixels(image)).int()
        assert got.shape == expected.shape == (3, 224, 224)
        difference = (got - expected).abs()
        assert int(difference.max()) <= 1, (width, height)
        assert float((difference > 0).float().mean()) < 0.01, (width, height)


def test_precision_auto_is_bf16_only_on_a_cpu_that_multiplies_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dogclf.model import network as models

    cpu = torch.device("cpu")
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)
    assert inference.pick_dtype(cpu) == torch.bfloat16
    assert inference.pick_dtype(cpu, "fp32") == torch.float32
    assert inference.pick_dtype(torch.device("cuda")) == torch.float32
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: False)
    assert inference.pick_dtype(cpu) == torch.float32
    assert inference.pick_dtype(cpu, "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of"):
        inference.pick_dtype(cpu, "fp16")


def test_each_model_server_worker_loads_onto_the_gpu_its_context_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No GPU here: torch.cuda's two queries are patched to a 4-GPU host (a mock, since no
    # real GPU can run here); the device is only chosen, nothing is loaded onto it.
    from types import SimpleNamespace

    assert inference.pick_device(SimpleNamespace(system_properties={"gpu_id": 2})).type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    worker = SimpleNamespace(system_properties={"gpu_id": 2, "model_dir": "/opt/ml/model"})
    assert inference.pick_device(worker) == torch.device("cuda:2")
    assert inference.pick_device(SimpleNamespace(system_properties={"gpu_id": "3"})).index == 3
    assert inference.pick_device(None) == torch.device("cuda")  # dogclf serve: no context
    assert inference.pick_device(SimpleNamespace(system_properties={})) == torch.device("cuda")


def test_bf16_and_fp32_give_the_same_answers(trained_model: TrainedModel) -> None:
    images = [image.read_bytes() for image, _ in trained_model.test_images()]
    answers = {}
    for precision in ("fp32", "bf16"):
        classifier = inference.load_classifier(trained_model.extracted, precision=precision)
        assert classifier.precision == precision
        answers[precision] = classifier.predict(images, 3)
    for fp32, bf16 in zip(answers["fp32"], answers["bf16"], strict=True):
        assert fp32[0]["label"] == bf16[0]["label"]
        assert [p["probability"] for p in fp32] == pytest.approx(
            [p["probability"] for p in bf16], abs=0.02
        )


# ---------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    "name",
    ["L", "P", "P+transparency", "RGBA", "LA", "1", "CMYK-jpeg", "16-bit-png", "I", "webp"],
)
def test_any_image_mode_becomes_rgb(name: str) -> None:
    base = photo((64, 48))
    images = {
        "L": lambda: encode(base.convert("L"), "PNG"),
        "P": lambda: encode(base.convert("P"), "PNG"),
        "P+transparency": lambda: encode(base.convert("P"), "PNG", transparency=0),
        "RGBA": lambda: encode(base.convert("RGBA"), "PNG"),
        "LA": lambda: encode(base.convert("LA"), "PNG"),
        "1": lambda: encode(base.convert("1"), "BMP"),
        "CMYK-jpeg": lambda: encode(base.convert("CMYK"), "JPEG"),
        "16-bit-png": sixteen_bit_png,
        "I": lambda: encode(base.convert("I"), "TIFF"),
        "webp": lambda: encode(base, "WEBP"),
    }
    image = preprocess.decode_image(images[name]())
    assert image.mode == "RGB"
    assert image.size == ((80, 60) if name == "16-bit-png" else (64, 48))


def _jpeg(size: tuple[int, int], seed: int = 0, **options: Any) -> bytes:
    return encode(photo(size, seed), "JPEG", **options)


def _turned_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the pixels are stored on their side
    return _jpeg((90, 60), exif=exif.tobytes())


@pytest.mark.parametrize(
    ("name", "data", "fast"),
    [
        ("rgb 4:2:0", _jpeg((300, 500), quality=90), True),
        ("rgb 4:4:4", _jpeg((333, 251), 1, subsampling=0), True),
        ("progressive", _jpeg((480, 320), 2, progressive=True), True),
        ("greyscale", encode(photo((400, 300), 3).convert("L"), "JPEG"), True),
        ("just under the draft scale", _jpeg((700, 511), 4), True),
        ("draft scale 1/2", _jpeg((1100, 800), 5), True),
        ("draft scale 1/4, odd sides", _jpeg((1201, 1035), 6, subsampling=0), True),
        ("draft scale 1/8, progressive", _jpeg((2300, 2100), 7, progressive=True), True),
        ("EXIF-turned", _turned_jpeg(), False),
        ("CMYK", encode(photo((200, 150)).convert("CMYK"), "JPEG"), False),
        ("PNG", encode(photo((200, 150)), "PNG"), False),
    ],
)
def test_decode_pixels_gives_pillows_pixels_and_takes_simplejpeg_for_plain_jpegs(
    name: str, data: bytes, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The serving decoder (simplejpeg for a plain JPEG, Pillow for the rest) gives exactly
    the pixels the training decoder (Pillow) gives. The real decoder is wrapped only to
    count its calls."""
    calls: list[bytes] = []
    real = preprocess._turbojpeg
    monkeypatch.setattr(preprocess, "_turbojpeg", lambda b, size: calls.append(b) or real(b, size))
    draft = preprocess.resize_size(224)
    served = preprocess.decode_pixels(data, draft_size=draft)
    trained = preprocess.to_pixels(preprocess.decode_image(data, draft_size=draft))
    assert served.dtype == torch.uint8 and served.shape == trained.shape
    assert torch.equal(served, trained), name
    assert bool(calls) is fast, name


def test_a_jpeg_libjpeg_refuses_gets_pillows_message() -> None:
    truncated = _jpeg((200, 150))[:600]
    assert preprocess._turbojpeg(truncated, (200, 150)) is None
    with pytest.raises(preprocess.ImageDecodeError, match="truncated"):
        preprocess.decode_pixels(truncated)


def test_without_simplejpeg_every_jpeg_goes_through_pillow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SageMaker PyTorch image has no simplejpeg: the same pixels, from Pillow."""
    data = _jpeg((300, 500), quality=90)
    with_it = preprocess.decode_pixels(data)
    monkeypatch.setitem(sys.modules, "simplejpeg", None)  # import simplejpeg raises
    assert preprocess._turbojpeg(data, (300, 500)) is None
    assert torch.equal(preprocess.decode_pixels(data), with_it)


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    image = preprocess.decode_image(sixteen_bit_png())
    low, high = image.convert("L").getextrema()  # type: ignore[misc]
    assert low < 20 and 200 < high < 256  # the whole 16-bit range, not all white


def test_exif_orientation_is_applied() -> None:
    upright = photo((90, 60))
    decoded = preprocess.decode_image(exif_rotated_png(upright))
    assert decoded.size == (90, 60)
    assert decoded.tobytes() == upright.tobytes()


def test_animated_gif_gives_its_first_frame() -> None:
    decoded = preprocess.decode_image(animated_gif())
    first = Image.open(__import__("io").BytesIO(animated_gif())).convert("RGB")
    assert decoded.tobytes() == first.tobytes()


@pytest.mark.parametrize(
    ("name", "data", "too_large", "message"),
    [
        ("empty", b"", False, "empty image"),
        ("text", b"just some text", False, "not an image"),
        ("html", b"<!doctype html><html><body>hi</body></html>", False, "not an image"),
        ("eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", False, "not an image"),
        ("truncated", encode(photo((200, 150)), "JPEG")[:600], False, "truncated"),
        ("bomb", bomb_png(10_000), True, "decompression bomb"),
        ("over the limit", bomb_png(2_100), True, "above the limit of 4,000,000"),
        ("a line", encode(Image.new("RGB", (20_000, 1)), "PNG"), False, "more than 20 times"),
    ],
)
def test_decoding_refuses_what_is_not_a_photo(
    name: str, data: bytes, too_large: bool, message: str
) -> None:
    with pytest.raises(preprocess.ImageDecodeError) as err:
        preprocess.decode_image(data, max_pixels=MAX_IMAGE_PIXELS)
    assert isinstance(err.value, preprocess.ImageTooLargeError) is too_large
    assert message in str(err.value)


# ---------------------------------------------------------------- requests


LIMITS = Limits(max_payload_bytes=50_000, max_images=4, top_k=5)
JPEG = encode(photo(), "JPEG")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_json_bodies() -> None:
    one = parse_request(json.dumps({"image": b64(JPEG), "top_k": 2}), "application/json", LIMITS)
    assert one.images == [JPEG] and one.top_k == 2 and not one.batched
    many = parse_request(
        json.dumps({"images": [b64(JPEG), "data:image/jpeg;base64," + b64(JPEG)]}).encode(),
        "application/json",
        LIMITS,
    )
    assert many.images == [JPEG, JPEG] and many.batched
    # top_k from the custom attributes header; the body wins when it has one.
    assert parse_request(JPEG, "image/jpeg", LIMITS, "trace=1,top_k=3").top_k == 3
    assert parse_request(json.dumps({"image": b64(JPEG), "top_k": 1}), "application/json", LIMITS, "top_k=3").top_k == 1  # fmt: skip
    # A serving stack that parsed the JSON already hands input_fn a dict.
    assert inference.input_fn({"image": b64(JPEG)}, "application/json").images == [JPEG]


def test_limits_from_the_environment() -> None:
    limits = Limits.from_env(
        {
            "DOGCLF_SERVING__MAX_PAYLOAD_MB": "0.5",
            "DOGCLF_SERVING__MAX_IMAGE_PIXELS": "1000",
            "DOGCLF_SERVING__TOP_K": "3",
            "DOGCLF_SERVING__URL_ALLOW_HOSTS": '["Images.Example.com"]',
        }
    )
    assert limits == Limits(
        max_payload_bytes=inference.MiB // 2,
        max_image_pixels=1000,
        top_k=3,
        url_allow_hosts=("images.example.com",),
    )
    assert Limits.from_env({}).url_allow_hosts == ()  # URL input is off by default


@pytest.fixture
def image_host() -> Iterator[str]:
    """A stdlib web server on loopback: /dog.jpg, and /moved redirecting off the list."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(JPEG)))
            self.end_headers()
            self.wfile.write(JPEG)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_input_only_from_allowed_hosts_and_never_redirected(image_host: str) -> None:
    allowed = Limits(url_allow_hosts=("127.0.0.1",))
    parsed = parse_request(
        json.dumps({"url": image_host + "/dog.jpg"}), "application/json", allowed
    )
    assert parsed.images == [JPEG]
    with pytest.raises(RequestError, match="could not fetch"):
        parse_request(json.dumps({"url": image_host + "/moved"}), "application/json", allowed)
    other = Limits(url_allow_hosts=("images.example.com",))
    with pytest.raises(RequestError, match="not on the allow-list"):
        parse_request(json.dumps({"url": image_host + "/dog.jpg"}), "application/json", other)
    with pytest.raises(RequestError, match="not on the allow-list"):
        parse_request(json.dumps({"url": "file:///etc/passwd"}), "application/json", allowed)


def test_simplejpeg_is_not_used_at_a_size_no_libjpeg_scale_gives() -> None:
    """Pillow's draft picks the size; where simplejpeg would decode at another (no scale of
    libjpeg's gives exactly it), decode_pixels must fall back to Pillow, not resize."""
    data = _jpeg((300, 500))
    assert preprocess._turbojpeg(data, (300, 500)) is not None
    assert preprocess._turbojpeg(data, (290, 480)) is None
