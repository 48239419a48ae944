"""`run_local_job`: a job trained through AWS's own launcher (sagemaker-training +
sagemaker-pytorch-training) on hosts laid out as SageMaker lays them out, real training."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from dogclf.config import DogclfConfig, TrainingSection
from dogclf.local.runner import JobFailedError, run_local_job
from dogclf.model.hyperparameters import hyperparameter_values
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


def test_local_job_runs_through_the_launcher_and_packs_a_servable_model(
    data: Path, tmp_path: Path
) -> None:
    logged: list[str] = []
    result = run_local_job(
        small_config(), channels(data), tmp_path, job_name="job-1", on_log=logged.append
    )
    host = tmp_path / "job-1" / "algo-1"  # this host's /opt/ml (SAGEMAKER_BASE_DIR)
    assert result.exit_code == 0 and result.job_dir == tmp_path / "job-1"
    # The tree SageMaker writes; hyperparameters JSON-encoded, as the SDK sends them.
    hps = json.loads((host / "input" / "config" / "hyperparameters.json").read_text())
    assert hps["arch"] == '"tiny_cnn"' and hps["epochs"] == "2" and hps["pretrained"] == "false"
    assert hps["sagemaker_program"] == '"dogclf_train.py"'
    resources = json.loads((host / "input" / "config" / "resourceconfig.json").read_text())
    assert resources["hosts"] == ["algo-1"] and resources["current_host"] == "algo-1"
    assert set(json.loads((host / "input" / "config" / "inputdataconfig.json").read_text())) == {
        "train",
        "valid",
        "test",
    }
    assert (host / "input" / "data" / "train" / "001.Affenpinscher").is_dir()
    # AWS's launcher ran: it unpacked the bundle itself, decoded every value, reported.
    assert (host / "code" / "dogclf_train.py").is_file()
    assert "Reporting training SUCCESS" in logged[-1]
    assert not any("Failed to parse hyperparameter" in line for line in logged)
    assert any(
        line.endswith(
            "--epochs 2 --freeze-backbone False --image-size 32 --int8-min-agreement 99.0 --label-smoothing 0.0 --lr 0.01 --num-workers 0 --optimizer adamw --patience 3 --pretrained False --seed 0 --weight-decay 0.0001"
        )
        for line in logged
    )
    assert (host / "output" / "success").is_file()
    # The program found its folders through the launcher's SM_* alone.
    assert (
        host / "model" / "model.pt"
    ).is_file() and result.model_dir == tmp_path / "job-1" / "model"
    # The core checkpoints in its job's own folder (TRAINING_JOB_NAME): tuning trials share one.
    assert (host / "checkpoints" / "job-1" / "checkpoint.pt").is_file()
    assert (tmp_path / "job-1" / "checkpoints" / "job-1" / "checkpoint.pt").is_file()  # re-run
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


def test_a_failing_program_gives_its_own_one_line_failure_reason(
    data: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    shutil.rmtree(broken / "valid" / "002.Afghan_hound")
    with pytest.raises(JobFailedError) as err:
        run_local_job(small_config(), channels(broken), tmp_path, job_name="bad")
    message = err.value.message
    assert "failed with exit code 1" in message
    assert "valid/ lacks 002.Afghan_hound" in message  # the program's own reason
    assert "Error:" in message  # the last log lines
    assert str(tmp_path / "bad" / "training.log") in (err.value.hint or "")
    # output/failure, written by the training core before the toolkit (which then keeps it):
    # the FailureReason DescribeTrainingJob gives, one line, no traceback.
    reason = err.value.failure_reason
    assert reason.startswith("AlgorithmError: ") and reason.endswith(", exit code: 1")
    assert "valid/ lacks 002.Afghan_hound" in reason
    assert "\n" not in reason and "Traceback" not in reason


def test_two_hosts_train_one_model_through_torchrun(data: Path, tmp_path: Path) -> None:
    logged: list[str] = []
    result = run_local_job(
        small_config(),
        channels(data),
        tmp_path,
        {"arch": "tiny_cnn", "epochs": 1, "batch-size": 4, "image-size": 32, "num-workers": 0},
        instance_count=2,
        job_name="multi",
        on_log=logged.append,
    )
    # Each host's launcher started torchrun, meeting on algo-1 (resolved on the job's loopback).
    for rank, host in enumerate(("algo-1", "algo-2")):
        assert any(
            line.startswith(
                f"[{host}] torchrun --nnodes 2 --nproc_per_node 1 --master_addr "
                f"algo-1 --master_port 7777 --node_rank {rank}"
            )
            for line in logged
        ), host
        config = tmp_path / "multi" / host / "input" / "config" / "resourceconfig.json"
        assert json.loads(config.read_text())["current_host"] == host
    assert result.metrics["world_size"] == 2
    assert result.metrics["samples_per_rank"] == [12, 12]  # 24 training images, split
    assert any(line.startswith("[algo-1] data: 3 classes") for line in logged)
    assert not any(line.startswith("[algo-2] data:") for line in logged)  # only rank 0 logs
    with tarfile.open(result.model_tar) as archive:  # the hosts' model/ merged
        assert {"model.pt", "labels.json", "metrics.json"} <= set(archive.getnames())


def test_tuning_style_hyperparameters_reach_the_program_decoded(data: Path, tmp_path: Path) -> None:
    """A tuning job's child gets the tuner's values and `_tuning_objective_metric`."""
    logged: list[str] = []
    tuned = {
        "lr": 0.0123,
        "batch-size": 8,
        "epochs": 1,
        "_tuning_objective_metric": "valid_accuracy",
    }
    result = run_local_job(
        small_config(),
        channels(data),
        tmp_path,
        {**hyperparameter_values(small_config().training), **tuned},
        job_name="tuned",
        on_log=logged.append,
    )
    hps = json.loads(
        (tmp_path / "tuned" / "algo-1" / "input" / "config" / "hyperparameters.json").read_text()
    )
    assert hps["_tuning_objective_metric"] == '"valid_accuracy"' and hps["lr"] == "0.0123"
    assert not any("Failed to parse hyperparameter" in line for line in logged)
    # The toolkit strips it (sagemaker_training/params.py SAGEMAKER_HYPERPARAMETERS).
    assert not any("--_tuning_objective_metric" in line for line in logged)
    used = result.metrics["hyperparameters"]
    assert used["lr"] == 0.0123 and used["batch-size"] == 8 and used["epochs"] == 1


def test_without_user_namespaces_one_host_runs_on_this_machines_network(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stand-in, said so: this machine allows unprivileged user namespaces and the suite runs
    # as root, so a host where they are off (Ubuntu 24.04's AppArmor default) is simulated by
    # the probe answering no; the launcher, the toolkit and the training are all real.
    from dogclf.local import job_network

    monkeypatch.setattr(job_network, "namespaces_available", lambda: False)
    logged: list[str] = []
    result = run_local_job(
        small_config(), channels(data), tmp_path, job_name="job-host", on_log=logged.append
    )
    assert result.exit_code == 0 and result.model_tar.is_file()
    # The toolkit's own switch skipped its wait for algo-1 to resolve.
    assert any("Bypass DNS check" in line for line in logged)
    assert "Reporting training SUCCESS" in logged[-1]


def test_without_user_namespaces_a_job_that_needs_host_names_says_what_to_enable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stand-in, said so: `unshare` is made to fail as it does where namespaces are off.
    from dogclf.errors import DogclfError
    from dogclf.local import job_network

    monkeypatch.setattr(job_network, "_UNSHARE", ["unshare", "--no-such-option"])
    with (
        pytest.raises(DogclfError) as caught,
        job_network.network_for(["algo-1", "algo-2"], tmp_path, torchrun=True),
    ):
        pass
    assert "network of their own" in caught.value.message
    assert "user namespaces" in (caught.value.hint or "")
