"""`dogclf predict`: --via local (the model in this process) and --via endpoint (the real
`dogclf serve`, reached by boto3 through AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME); the table,
--json, batching into requests, and bad files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from serving_support import Served, TrainedModel, clean_env
from typer.testing import CliRunner

from dogclf.cli import app

pytestmark = pytest.mark.slow


@pytest.fixture
def env(served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No real AWS: dummy credentials, sagemaker-runtime routed to the test server."""
    variables = clean_env(
        AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=served.url, DOGCLF_CONFIG=str(served.model.config)
    )
    for key in list(os.environ):
        if key.startswith(("AWS_", "DOGCLF_")):
            monkeypatch.delenv(key)
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return variables


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
