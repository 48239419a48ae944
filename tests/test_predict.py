"""`dogclf predict`: --via local (the model in this process) and --via endpoint, reached by
boto3 through AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME, on both images an endpoint can run: the
PyTorch inference image (AWS's handler service) and the BYO image (the real `dogclf serve`);
the table, --json, batching into requests, and bad files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serving_support import Served, TrainedModel, clean_env, crashing_model
from typer.testing import CliRunner

from dogclf.cli import app

pytestmark = pytest.mark.slow


ACCOUNT = "123456789012"  # the account AWS's ModelError names


def point_at(url: str, config: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No real AWS: dummy credentials, sagemaker-runtime routed to the server at `url`."""
    variables = clean_env(AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=url, DOGCLF_CONFIG=str(config))
    for key in list(os.environ):
        if key.startswith(("AWS_", "DOGCLF_")):
            monkeypatch.delenv(key)
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    return variables


@pytest.fixture
def env(served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The endpoint on the BYO image: `dogclf serve`."""
    monkeypatch.chdir(tmp_path)
    return point_at(served.url, served.model.config, monkeypatch)


@pytest.fixture
def pytorch_image(
    handler_service: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Served:
    """The endpoint on the PyTorch inference image: AWS's handler service."""
    monkeypatch.chdir(tmp_path)
    point_at(handler_service.url, handler_service.model.config, monkeypatch)
    return handler_service


def predict(*args: str) -> Any:
    return CliRunner().invoke(app, ["predict", *args])


def rows_by_image(output: str) -> dict[str, Any]:
    return {row["image"]: row for row in json.loads(output)}


def test_via_local_and_via_endpoint_agree_and_are_right(
    served: Served, env: dict[str, str], tmp_path: Path
) -> None:
    model = served.model
    folder = tmp_path / "photos"
    expected: dict[str, str] = {}
    for i, (image, breed) in enumerate(model.test_images()):
        target = folder / ("sub" if i % 2 else "") / f"{i:02d}-{image.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, target)
        expected[str(target)] = breed

    local = predict(str(folder), "--via", "local", "--model", str(model.tar), "--json")
    assert local.exit_code == 0, local.output
    remote = predict(str(folder), "--json", "--top-k", "5")  # --via endpoint is the default
    assert remote.exit_code == 0, remote.output

    by_local, by_endpoint = rows_by_image(local.stdout), rows_by_image(remote.stdout)
    assert set(by_local) == set(by_endpoint) == set(expected)  # the folder, searched recursively
    for image, row in by_local.items():
        other = by_endpoint[image]["predictions"]
        assert [(p["label"], p["index"]) for p in row["predictions"]] == [
            (p["label"], p["index"]) for p in other
        ]
        assert [p["probability"] for p in row["predictions"]] == pytest.approx(
            [p["probability"] for p in other], abs=1e-5
        )
    right = sum(row["predictions"][0]["label"] == expected[i] for i, row in by_local.items())
    assert right >= 0.8 * len(expected)  # the trained model, not noise


def test_many_images_go_in_batches(served: Served, env: dict[str, str], tmp_path: Path) -> None:
    images = [image for image, _ in served.model.test_images()]
    files = []
    for i in range(9):
        files.append(tmp_path / f"dog{i}.jpg")
        shutil.copyfile(images[i % len(images)], files[-1])
    before = served.client.stats()
    result = predict(*map(str, files), "--batch-size", "4", "--top-k", "2", "--json")
    assert result.exit_code == 0, result.output
    after = served.client.stats()
    assert after["requests"] - before["requests"] == 3  # 4 + 4 + 1
    assert after["images"] - before["images"] == 9
    rows = json.loads(result.stdout)
    assert [row["image"] for row in rows] == list(map(str, files))  # in the order given
    assert all(len(row["predictions"]) == 2 for row in rows)


def test_the_table_names_each_image_and_its_breeds(
    served: Served, env: dict[str, str], tmp_path: Path
) -> None:
    image, breed = served.model.test_images()[0]
    photo = tmp_path / "rex.jpg"
    shutil.copyfile(image, photo)
    result = predict(str(photo), "--top-k", "2")
    assert result.exit_code == 0, result.output
    table = result.stdout
    assert str(photo) in table and "breed" in table and "probability" in table
    assert breed in table and "%" in table and "█" in table
    assert len([name for name in served.model.labels if name in table]) == 2  # top 2 only


def test_a_bad_file_is_reported_and_the_others_still_classified(
    served: Served, env: dict[str, str], tmp_path: Path
) -> None:
    image, _ = served.model.test_images()[0]
    good = tmp_path / "good.jpg"
    shutil.copyfile(image, good)
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for via in (["--via", "endpoint"], ["--via", "local", "--model", str(served.model.tar)]):
        result = predict(
            str(good), str(bad), str(empty), str(tmp_path / "missing.jpg"), "--json", *via
        )
        assert result.exit_code == 1
        rows = json.loads(result.stdout)
        assert "predictions" in rows[0]
        assert "not an image" in rows[1]["error"]
        assert rows[2]["error"] == "empty file"
        assert "No such file" in rows[3]["error"]
        assert "Traceback" not in result.output
        assert f"Error: {bad}: " in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--via", "local", "--model", "nowhere/m.tar.gz"],
            "model nowhere/m.tar.gz does not exist",
        ),
        (["--via", "endpoint", "--endpoint-name", "x", "EMPTY_DIR"], "no images in"),
    ],
)
def test_predict_errors_are_one_line(
    args: list[str], message: str, env: dict[str, str], tmp_path: Path, trained_model: TrainedModel
) -> None:
    (tmp_path / "EMPTY_DIR").mkdir()
    image, _ = trained_model.test_images()[0]
    result = predict(str(image), *args)
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output


def test_predict_via_endpoint_as_a_real_process(served: Served, env: dict[str, str]) -> None:
    """The installed command in a child process, as a user runs it."""
    image, breed = served.model.test_images()[0]
    proc = subprocess.run(
        [sys.executable, "-m", "dogclf", "predict", str(image), "--json", "--top-k", "1"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["predictions"][0]["label"] == breed and len(row["predictions"]) == 1


# ---------------------------------------------------------------- on the PyTorch inference image


def test_via_endpoint_on_the_pytorch_image_equals_via_local(
    pytorch_image: Served, tmp_path: Path
) -> None:
    model = pytorch_image.model
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, (image, _) in enumerate(model.test_images()):
        shutil.copyfile(image, folder / f"{i:02d}.jpg")
    local = predict(str(folder), "--via", "local", "--model", str(model.tar), "--json")
    remote = predict(str(folder), "--json")
    assert local.exit_code == 0 and remote.exit_code == 0, local.output + remote.output
    assert json.loads(remote.stdout) == json.loads(local.stdout)
    # One image goes raw, top_k in the custom attributes: code/inference.py reads them
    # from the context the handler service passes.
    one = predict(str(folder / "00.jpg"), "--json", "--top-k", "1")
    assert one.exit_code == 0, one.output
    assert (
        json.loads(one.stdout)[0]["predictions"] == json.loads(local.stdout)[0]["predictions"][:1]
    )


def test_a_bad_file_on_the_pytorch_image_is_one_clean_line(
    pytorch_image: Served, tmp_path: Path
) -> None:
    """The container answers message + traceback as plain text, AWS's ModelError names the
    account: the user sees the message's first line, per file, and the others classified."""
    image, _ = pytorch_image.model.test_images()[0]
    good, bad, cut = tmp_path / "good.jpg", tmp_path / "notes.jpg", tmp_path / "cut.jpg"
    shutil.copyfile(image, good)
    bad.write_text("not a photo")
    cut.write_bytes(image.read_bytes()[:300])
    result = predict(str(good), str(bad), str(cut), "--json")
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert "predictions" in rows[0]
    assert rows[1]["error"] == "not an image Pillow can read (JPEG, PNG, WebP, GIF, BMP, TIFF)"
    assert "truncated" in rows[2]["error"] and "\n" not in rows[2]["error"]
    assert "Traceback" not in result.output and ACCOUNT not in result.output
    assert f"Error: {bad}: not an image" in result.stderr


@pytest.fixture(scope="module")
def crashing_endpoint(
    trained_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The handler service over a copy of the model whose predict_fn raises."""
    from dogclf.local.serve_process import start_pytorch_inference

    root = tmp_path_factory.mktemp("crashing-endpoint")
    model = crashing_model(trained_model.extracted, root / "model-src")
    env = clean_env(SAGEMAKER_PROGRAM="inference.py")
    process = start_pytorch_inference(model, root / "endpoint", env=env)
    try:
        yield process.url
    finally:
        process.stop()


def test_a_model_crash_on_the_pytorch_image_is_one_line_naming_the_logs(
    crashing_endpoint: str, trained_model: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_at(crashing_endpoint, trained_model.config, monkeypatch)
    image, _ = trained_model.test_images()[0]
    result = predict(str(image), "--endpoint-name", "dogclf-dev")
    assert result.exit_code == 1
    assert "the endpoint dogclf-dev failed (500): the model crashed" in result.stderr
    assert "/aws/sagemaker/Endpoints/dogclf-dev" in result.stderr
    assert "Traceback" not in result.output and ACCOUNT not in result.output
