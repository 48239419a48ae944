"""The real `dogclf serve` process: the SageMaker container contract, the sagemaker-runtime
API path through boto3, a corpus of bad input, readiness, and graceful shutdown."""

from __future__ import annotations

import base64
import http.client
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from serving_support import (
    MAX_PAYLOAD_MB,
    Client,
    Response,
    Served,
    TrainedModel,
    animated_gif,
    bomb_png,
    clean_env,
    encode,
    exif_rotated_png,
    sixteen_bit_png,
)

from dogclf.local.emulator import Emulator

pytestmark = pytest.mark.slow


def predictions(response: Response) -> list[dict[str, Any]]:
    assert response.status == 200, response.body[:500]
    assert response.headers["content-type"] == "application/json"
    found: list[dict[str, Any]] = response.json()["predictions"]
    return found


def well_formed(found: Any, labels: list[str], k: int = 3) -> bool:
    """A top-k list: real labels at their index, probabilities in [0, 1], best first."""
    if not isinstance(found, list) or len(found) != min(k, len(labels)):
        return False
    probs = [p["probability"] for p in found]
    return (
        all(labels[p["index"]] == p["label"] for p in found)
        and all(0 <= x <= 1 for x in probs)
        and probs == sorted(probs, reverse=True)
    )


def labels_of(found: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(p["label"], p["index"]) for p in found]


# ---------------------------------------------------------------- the contract


def test_ping_and_an_invocation(served: Served) -> None:
    client = served.client
    ping = client.request("GET", "/ping")
    assert ping.status == 200 and ping.json() == {"status": "ok"}
    image, breed = served.model.test_images()[0]
    response = client.invoke(
        image.read_bytes(),
        "image/jpeg",
        **{"X-Amzn-SageMaker-Custom-Attributes": "top_k=2", "Accept": "application/json"},
    )
    found = predictions(response)
    assert len(found) == 2 and found[0]["label"] == breed
    assert response.headers["x-amzn-sagemaker-custom-attributes"] == "top_k=2"  # echoed back
    assert response.headers["x-amzn-requestid"]
    # Batch transform asks the container for its limits.
    params = client.request("GET", "/execution-parameters").json()
    assert params["MaxPayloadInMB"] == MAX_PAYLOAD_MB and params["BatchStrategy"]
    assert client.request("GET", "/nowhere").status == 404
    assert client.request("PUT", "/invocations", b"x").status == 405


def test_the_server_runs_on_uvloop_where_installed_and_on_asyncio_without_it(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The `torch` install profile brings uvloop (not on Windows); an image without it
    serves on asyncio's loop, the same answers."""
    import torch

    from dogclf.model import inference
    from dogclf.serving.server import InferenceService, ModelServer

    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert sys.platform == "win32" or expected == "uvloop", "the dev install has uvloop"
    assert served.client.stats()["event_loop"] == expected

    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    service = InferenceService(inference.Limits(), workers=1, torch_threads=torch.get_num_threads())
    service.load(served.model.extracted)
    server = ModelServer(service, "127.0.0.1", 0).start()
    try:
        client = Client(server.url)
        assert client.stats()["event_loop"] == "asyncio"
        image, breed = served.model.test_images()[0]
        assert predictions(client.invoke(image.read_bytes(), "image/jpeg"))[0]["label"] == breed
    finally:
        assert server.stop() == 0


def test_boto3_through_the_runtime_endpoint_variable_matches_predict_via_local(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    import botocore.exceptions
    from typer.testing import CliRunner

    from dogclf.cli import app

    for key, value in clean_env(AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=served.url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    runtime = boto3.client("sagemaker-runtime")  # no endpoint_url: the variable routes it
    images = [image for image, _ in served.model.test_images()[:4]]
    model = str(served.model.tar)
    local = CliRunner().invoke(
        app,
        [
            "predict",
            *map(str, images),
            "--via",
            "local",
            "--model",
            model,
            "--json",
            "--top-k",
            "3",
        ],
    )
    assert local.exit_code == 0, local.output
    expected = {row["image"]: row["predictions"] for row in json.loads(local.stdout)}

    for image in images:
        answer = runtime.invoke_endpoint(
            EndpointName="dogclf-dev",
            Body=image.read_bytes(),
            ContentType="image/jpeg",
            Accept="application/json",
            CustomAttributes="top_k=3",
        )
        assert answer["ContentType"] == "application/json"
        assert answer["InvokedProductionVariant"] == "AllTraffic"
        assert answer["CustomAttributes"] == "top_k=3"
        found = json.loads(answer["Body"].read())["predictions"]
        assert labels_of(found) == labels_of(expected[str(image)])
        assert [p["probability"] for p in found] == pytest.approx(
            [p["probability"] for p in expected[str(image)]], abs=1e-5
        )

    # The model's 4xx comes back as sagemaker-runtime does it: ModelError with its status.
    with pytest.raises(botocore.exceptions.ClientError) as err:
        runtime.invoke_endpoint(EndpointName="dogclf-dev", Body=b"nope", ContentType="image/jpeg")
    error = err.value.response
    assert error["Error"]["Code"] == "ModelError" and error["OriginalStatusCode"] == 400
    assert "not an image" in json.loads(error["OriginalMessage"])["message"]


def test_concurrent_requests_are_batched_and_answered_in_order(served: Served) -> None:
    client = served.client
    images = [image.read_bytes() for image, _ in served.model.test_images()]
    alone = [predictions(client.invoke(data, "image/jpeg")) for data in images]
    before = client.stats()["batching"]["items"]
    together: list[Any] = [None] * len(images)

    def send(i: int) -> None:
        together[i] = predictions(client.invoke(images[i], "image/jpeg"))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Each request got its own image's answer, whatever batch it rode in.
    for one, other in zip(alone, together, strict=True):
        assert labels_of(one) == labels_of(other)
        assert [p["probability"] for p in one] == pytest.approx(
            [p["probability"] for p in other], abs=1e-5
        )
    stats = client.stats()
    assert stats["batching"]["items"] == before + len(images)
    # The batch size measured at load is what the workers take at most.
    tuning = stats["batch_tuning"]
    assert tuning["batch_size"] <= tuning["max_batch_size"]
    assert set(tuning["ms_per_image"]) == {"1", "2", "4", "8", "16"}
    assert stats["batching"]["largest_batch"] <= tuning["batch_size"]
    # A JSON batch: one list per image, in order.
    body = json.dumps({"images": [base64.b64encode(d).decode() for d in images[:3]], "top_k": 2})
    rows = client.invoke(body.encode(), "application/json").json()["predictions"]
    assert [labels_of(r) for r in rows] == [labels_of(a)[:2] for a in alone[:3]]


# ---------------------------------------------------------------- bad input


Expect = int | Callable[[list[dict[str, Any]]], bool]


def bad_input_corpus(
    model: TrainedModel, upright_answer: list[dict[str, Any]]
) -> list[tuple[str, bytes, str | None, Expect]]:
    """(name, body, Content-Type, expected status or a check of the predictions).

    `upright_answer`: the server's top-3 for the first test image as a plain PNG, which its
    EXIF-rotated twin must get too (the pixels are identical once the EXIF turn is applied).
    """
    sample, _ = model.test_images()[0]
    jpeg = sample.read_bytes()
    upright = Image.open(sample).convert("RGB")
    rgb = upright.resize((96, 72))

    def ok(found: list[dict[str, Any]]) -> bool:
        return well_formed(found, model.labels)

    def same_as_upright(found: list[dict[str, Any]]) -> bool:
        probs = [p["probability"] for p in found]
        return (
            ok(found)
            and labels_of(found) == labels_of(upright_answer)
            and probs == pytest.approx([p["probability"] for p in upright_answer], abs=1e-5)
        )

    over_limit = os.urandom(int(MAX_PAYLOAD_MB * 1024 * 1024) + 1000)
    return [
        ("empty body", b"", "image/jpeg", 400),
        ("truncated JPEG", jpeg[: len(jpeg) // 2], "image/jpeg", 400),
        ("text", b"a dog, honestly", "text/plain", 415),
        ("text sent as an image", b"a dog, honestly", "image/jpeg", 400),
        ("HTML", b"<!doctype html><html><body><img src=dog.jpg></body></html>", "text/html", 415),
        ("HTML sent as an image", b"<html><body>dog</body></html>", "application/x-image", 400),
        ("decompression bomb", bomb_png(12_000), "image/png", 413),
        ("too many pixels", bomb_png(2_100), "image/png", 413),
        ("1x1 image", encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"), "image/png", ok),
        ("a 1-pixel line", encode(Image.new("RGB", (4000, 1)), "PNG"), "image/png", 400),
        ("CMYK JPEG", encode(rgb.convert("CMYK"), "JPEG"), "image/jpeg", ok),
        ("greyscale JPEG", encode(rgb.convert("L"), "JPEG"), "image/jpeg", ok),
        ("16-bit PNG", sixteen_bit_png(), "image/png", ok),
        ("RGBA PNG", encode(rgb.convert("RGBA"), "PNG"), "image/png", ok),
        ("palette PNG", encode(rgb.convert("P"), "PNG", transparency=0), "image/png", ok),
        ("animated GIF", animated_gif(), "image/gif", ok),
        ("WebP", encode(rgb, "WEBP"), "image/webp", ok),
        ("PNG labelled JPEG", encode(rgb, "PNG"), "image/jpeg", ok),
        ("no Content-Type", jpeg, None, ok),
        ("EXIF-rotated", exif_rotated_png(upright), "image/png", same_as_upright),
        ("wrong content type", jpeg, "application/pdf", 415),
        ("bad base64", b'{"image": "not base64!"}', "application/json", 400),
        ("JSON without an image", b'{"top_k": 3}', "application/json", 400),
        ("not JSON", b"{'image': ", "application/json", 400),
        (
            "a bad image in a batch",
            json.dumps({"images": [base64.b64encode(jpeg).decode(), "aGVsbG8="]}).encode(),
            "application/json",
            400,
        ),
        (
            "top_k out of range",
            json.dumps({"image": base64.b64encode(jpeg).decode(), "top_k": 0}).encode(),
            "application/json",
            400,
        ),
        (
            "URL input (off)",
            b'{"url": "http://169.254.169.254/latest/meta-data/"}',
            "application/json",
            400,
        ),
        ("payload over the limit", over_limit, "image/jpeg", 413),
        (
            "JSON over the limit",
            b'{"image": "' + b"A" * len(over_limit) + b'"}',
            "application/json",
            413,
        ),
    ]


def test_bad_input_corpus_gets_4xx_or_a_correct_prediction_and_the_server_stays_up(
    served: Served,
) -> None:
    client = served.client
    top3 = {"X-Amzn-SageMaker-Custom-Attributes": "top_k=3"}
    sample, _ = served.model.test_images()[0]
    upright_png = encode(Image.open(sample).convert("RGB"), "PNG")
    corpus = bad_input_corpus(
        served.model, predictions(client.invoke(upright_png, "image/png", **top3))
    )
    wrong: list[str] = []
    for name, body, content_type, expect in corpus:
        response = client.invoke(body, content_type, **top3)
        if isinstance(expect, int):
            document = response.json() if response.body.startswith(b"{") else {}
            message = document.get("message", "")
            if response.status != expect or not message or document.get("status") != expect:
                wrong.append(f"{name}: {response.status} {response.body[:200]!r}, want {expect}")
        elif response.status != 200 or not expect(response.json()["predictions"]):
            wrong.append(f"{name}: {response.status} {response.body[:300]!r}")
    assert len(corpus) >= 15
    assert wrong == []
    assert client.request("GET", "/ping").status == 200
    log = served.log.read_text()
    assert "Traceback" not in log and " 500 " not in log


def test_a_body_far_over_the_limit_is_refused_without_reading_it(served: Served) -> None:
    """Declared 100 MB: 413 at once from the headers, and the connection is closed."""
    client = served.client
    with socket.create_connection((client.host, client.port)) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 100000000\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"the limit is" in answer
    assert client.request("GET", "/ping").status == 200


# ---------------------------------------------------------------- lifecycle


def read_until(stream: Any, pattern: str) -> re.Match[str]:
    for line in stream:
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"the stream ended before {pattern!r}")


def test_ping_is_503_until_the_model_is_loaded_and_sigterm_while_loading_exits_cleanly(
    trained_model: TrainedModel, tmp_path: Path
) -> None:
    """The model arrives through a named pipe, so the test decides when loading can finish:
    `serve` reads model.tar.gz as a stream, and blocks until the bytes come."""
    env = clean_env(DOGCLF_CONFIG=str(trained_model.config))
    for finish in (True, False):
        fifo = tmp_path / f"model-{finish}.tar.gz"
        os.mkfifo(fifo)
        proc = subprocess.Popen(
            [sys.executable, "-m", "dogclf", "serve", str(fifo), "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stderr is not None and proc.stdout is not None
            url = read_until(proc.stderr, r"Listening on (http://\S+)").group(1)
            client = Client(url)
            ping = client.request("GET", "/ping")
            assert ping.status == 503 and ping.json() == {"status": "loading"}
            early = client.invoke(b"x", "image/jpeg")
            assert early.status == 503 and "still loading" in early.json()["message"]
            if finish:
                with open(fifo, "wb") as pipe:
                    pipe.write(trained_model.tar.read_bytes())
                read_until(proc.stdout, r"^Serving ")
                assert client.request("GET", "/ping").status == 200
            proc.send_signal(signal.SIGTERM)
            code = proc.wait()
            rest = proc.stderr.read()
            assert code == 0, f"finish={finish}: {rest}"
            assert "Traceback" not in rest
            if not finish:
                assert "Stopped before the model was loaded" in rest
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_sigterm_finishes_the_request_in_flight_then_exits_0(
    trained_model: TrainedModel, tmp_path: Path
) -> None:
    """A request whose body is half sent is in flight when SIGTERM arrives: the server
    stops accepting, closes an idle keep-alive connection (its client reconnects elsewhere),
    finishes the half-sent one once its body is complete, and exits 0."""
    from dogclf.local.serve_process import start_serve

    log = tmp_path / "serve.log"
    env = clean_env(DOGCLF_CONFIG=str(trained_model.config))
    plan = ["--precision", "fp32", "--workers", "1", "--torch-threads", "1"]
    server = start_serve(str(trained_model.extracted), env=env, log_path=log, extra_args=plan)
    try:
        client = Client(server.url)
        model = client.stats()["model"]
        assert model == {"precision": "fp32", "workers": 1, "torch_threads": 1}
        image, breed = trained_model.test_images()[0]
        data = image.read_bytes()
        open_conn = http.client.HTTPConnection(client.host, client.port, timeout=60)
        open_conn.request("POST", "/invocations", data, {"Content-Type": "image/jpeg"})
        first = open_conn.getresponse()
        assert first.status == 200 and first.read()

        slow = socket.create_connection((client.host, client.port))
        head = (
            f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode()
        slow.sendall(head + data[:100])
        while client.stats()["in_flight"] != 1:  # the server holds it, waiting for the body
            pass

        server.proc.send_signal(signal.SIGTERM)
        while True:  # new connections are refused once it drains
            try:
                socket.create_connection((client.host, client.port), timeout=5).close()
            except (ConnectionRefusedError, ConnectionResetError):
                break
            except TimeoutError:
                pass  # a full accept queue: try again

        assert open_conn.sock is not None
        assert open_conn.sock.recv(1) == b""  # the idle connection was closed, not left open
        open_conn.close()

        slow.sendall(data[100:])
        answer = b""
        while chunk := slow.recv(65536):
            answer += chunk
        slow.close()
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 200 OK"
        body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
        assert body["predictions"][0]["label"] == breed

        assert server.proc.wait() == 0
        text = log.read_text()
        assert "finishing 1 request(s) in flight" in text and "Stopped." in text
    finally:
        server.stop()


@pytest.mark.parametrize("problem", ["missing", "not a tarball", "corrupt weights"])
def test_serve_with_a_bad_model_prints_one_error_line_and_exits_1(
    problem: str, trained_model: TrainedModel, tmp_path: Path
) -> None:
    if problem == "missing":
        model = tmp_path / "nowhere" / "model.tar.gz"
        want = "does not exist"
    elif problem == "not a tarball":
        model = tmp_path / "model.tar.gz"
        model.write_bytes(b"this is not a tarball")
        want = "cannot unpack"
    else:
        model = tmp_path / "model"
        model.mkdir()
        (model / "labels.json").write_text(json.dumps(trained_model.labels))
        (model / "model.pt").write_bytes(b"\x80\x04 not a torch file")
        want = "cannot load the model"
    proc = subprocess.run(
        [sys.executable, "-m", "dogclf", "serve", str(model), "--port", "0"],
        env=clean_env(DOGCLF_CONFIG=str(trained_model.config)),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and want in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_serve_latest_and_an_s3_uri_from_the_emulated_bucket(
    aws: Emulator, trained_model: TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve latest` follows the pointer beside the artifacts in S3 (moto over HTTP);
    `predict --via local` with no --model means the same latest model."""
    import boto3
    from typer.testing import CliRunner

    from dogclf.aws.artifacts import LatestModel, write_latest
    from dogclf.aws.session import AwsContext
    from dogclf.cli import app
    from dogclf.config import load_config
    from dogclf.local.serve_process import start_serve

    config = tmp_path / "dogclf.toml"
    config.write_text('[aws]\nbucket = "dogclf-serve-test"\n')
    monkeypatch.setenv("DOGCLF_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)
    cfg = load_config(config)
    runner = CliRunner()

    missing = runner.invoke(app, ["serve", "latest", "--port", "0"])
    assert missing.exit_code == 1 and "no trained model yet" in missing.stderr

    boto3.client("s3").create_bucket(Bucket="dogclf-serve-test")
    uri = "s3://dogclf-serve-test/dogclf/dev/models/run-1/output/model.tar.gz"
    boto3.client("s3").upload_file(str(trained_model.tar), "dogclf-serve-test", uri[23:])
    write_latest(AwsContext.from_config(cfg), cfg, LatestModel(uri, "train-ec2"))
    image, breed = trained_model.test_images()[0]
    for spec in ("latest", uri):
        server = start_serve(spec, env=dict(os.environ), log_path=tmp_path / "serve.log")
        try:
            answer = Client(server.url).invoke(image.read_bytes(), "image/jpeg")
            assert predictions(answer)[0]["label"] == breed
        finally:
            assert server.stop() == 0

    local = runner.invoke(app, ["predict", str(image), "--via", "local", "--json"])
    assert local.exit_code == 0, local.output
    assert json.loads(local.stdout)[0]["predictions"][0]["label"] == breed
    gone = runner.invoke(app, ["serve", uri.replace("run-1", "run-2"), "--port", "0"])
    assert gone.exit_code == 1 and "does not exist" in gone.stderr
