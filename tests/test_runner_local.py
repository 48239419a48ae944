"""`run_local_job`: the SageMaker training container contract emulated here, real training."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from dogclf.config import DogclfConfig, TrainingSection
from dogclf.errors import ResourceFailedError
from dogclf.local.runner import run_local_job
from dogclf.model.metrics import parse_metrics
from dogclf.training.synthetic import make_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runner") / "data"
    return make_dataset(root, classes=3, per_class=12, size_range=(40, 64), seed=5)


def small_config() -> DogclfConfig:
    return DogclfConfig(
        training=TrainingSection(
            arch="tiny_cnn",
            pretrained=False,
            freeze_backbone=False,
            epochs=2,
            batch_size=8,
            lr=0.01,
            image_size=32,
            num_workers=0,
        )
    )


def channels(data: Path) -> dict[str, Path]:
    return {split: data / split for split in ("train", "valid", "test")}


def test_local_job_follows_the_container_contract_and_packs_a_servable_model(
    data: Path, tmp_path: Path
) -> None:
    logged: list[str] = []
    result = run_local_job(
        small_config(), channels(data), tmp_path, job_name="job-1", on_log=logged.append
    )
    opt_ml = tmp_path / "job-1" / "opt" / "ml"
    assert result.exit_code == 0 and result.job_dir == tmp_path / "job-1"
    # The tree the container has; hyperparameters as SageMaker writes them (all strings).
    hps = json.loads((opt_ml / "input" / "config" / "hyperparameters.json").read_text())
    assert hps["arch"] == "tiny_cnn" and hps["epochs"] == "2" and hps["pretrained"] == "false"
    assert json.loads((opt_ml / "input" / "config" / "resourceconfig.json").read_text())[
        "hosts"
    ] == ["algo-1"]
    assert set(json.loads((opt_ml / "input" / "config" / "inputdataconfig.json").read_text())) == {
        "train",
        "valid",
        "test",
    }
    assert (opt_ml / "input" / "data" / "train" / "001.Affenpinscher").is_dir()
    # The entry point found its folders through SM_* alone (no --model-dir was passed).
    assert result.model_dir == opt_ml / "model" and (opt_ml / "model" / "model.pt").is_file()
    assert (opt_ml / "checkpoints" / "checkpoint.pt").is_file()
    # Output streamed to the callback and the log file; metric lines parse.
    assert logged and result.log_path.read_text().splitlines() == logged
    assert len(parse_metrics("\n".join(logged))["valid_accuracy"]) == 3  # 2 epochs + final
    assert result.metrics["epochs_run"] == 2

    extracted = tmp_path / "extracted"
    with tarfile.open(result.model_tar) as archive:
        assert all(not name.startswith(("/", "model/", "./")) for name in archive.getnames())
        archive.extractall(extracted, filter="data")
    labels = json.loads((extracted / "labels.json").read_text())
    assert labels == ["Affenpinscher", "Afghan_hound", "Airedale_terrier"]
    # What the SageMaker PyTorch inference container would do with it: code/inference.py.
    if not (extracted / "code" / "inference.py").is_file():
        pytest.skip("dogclf/model/inference.py not in this checkout yet")
    image = next((data / "test").rglob("*.jpg"))
    probe = (
        "import sys, json; sys.path.insert(0, 'code'); import inference as i; "
        "m = i.model_fn('.'); body = open(sys.argv[1], 'rb').read(); "
        "out, _ = i.output_fn(i.predict_fn(i.input_fn(body, 'image/jpeg'), m), 'application/json'); "
        "print(json.loads(out)['predictions'][0]['label'])"
    )
    served = subprocess.run(
        [sys.executable, "-c", probe, str(image)], cwd=extracted, capture_output=True, text=True
    )
    assert served.returncode == 0, served.stderr[-2000:]
    assert served.stdout.strip() in labels


def test_a_failing_entry_point_raises_with_exit_code_and_last_lines(
    data: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    shutil.rmtree(broken / "valid" / "002.Afghan_hound")
    with pytest.raises(ResourceFailedError) as err:
        run_local_job(small_config(), channels(broken), tmp_path, job_name="bad")
    message = err.value.message
    assert "failed with exit code 1" in message
    assert "valid/ lacks 002.Afghan_hound" in message  # the entry point's own reason
    assert "Error:" in message  # the last log lines
    assert str(tmp_path / "bad" / "training.log") in (err.value.hint or "")


def test_two_instances_train_one_model_on_split_data(data: Path, tmp_path: Path) -> None:
    logged: list[str] = []
    result = run_local_job(
        small_config(),
        channels(data),
        tmp_path,
        {
            "arch": "tiny_cnn",
            "epochs": "1",
            "batch-size": "4",
            "image-size": "32",
            "num-workers": "0",
        },
        instance_count=2,
        job_name="multi",
        on_log=logged.append,
    )
    assert result.metrics["world_size"] == 2
    assert result.metrics["samples_per_rank"] == [12, 12]  # 24 training images, split
    assert any(line.startswith("[algo-1] data: 3 classes") for line in logged)
    assert not any(line.startswith("[algo-2] data:") for line in logged)  # only rank 0 logs
    assert result.model_tar.is_file()
