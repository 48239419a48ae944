"""`dogclf train-sagemaker`: the training and tuning job requests as SageMaker (moto over
HTTP) stores them, waiting and logs, failures, the source bundle, and `--local`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import boto3
import pytest
from aws_support import BUCKET, ROLE, Project, resources, uploaded_project

from dogclf.aws.artifacts import read_latest
from dogclf.aws.instance_gpus import GPU_COUNTS, gpu_count, wants_torchrun
from dogclf.aws.session import AwsContext
from dogclf.aws.source_bundle import ENTRY_SCRIPT, build_bundle
from dogclf.aws.tuning_jobs import unquote
from dogclf.config import load_config
from dogclf.local.emulator import Emulator
from dogclf.model.hyperparameters import ENTRY_MODULE, TORCH_DISTRIBUTED, hyperparameter_values
from dogclf.model.metrics import METRIC_DEFINITIONS

DATA = f"s3://{BUCKET}/dogclf/dev/data"
SPOT_2 = {
    "DOGCLF_TRAINING__INSTANCE_COUNT": "2",
    "DOGCLF_TRAINING__SPOT": "true",
    "DOGCLF_TRAINING__MAX_RUN": "3600",
    "DOGCLF_TRAINING__MAX_WAIT": "7200",
}


@pytest.fixture
def project(aws: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    return uploaded_project(tmp_path, aws, monkeypatch)


def only_job() -> dict:
    sm = boto3.client("sagemaker")
    (summary,) = sm.list_training_jobs()["TrainingJobSummaries"]
    return sm.describe_training_job(TrainingJobName=summary["TrainingJobName"])


def test_training_job_request_carries_everything(project: Project) -> None:
    result = project.run("train-sagemaker", "--no-wait", env=SPOT_2)
    assert result.exit_code == 0, result.output
    job = only_job()
    assert result.stdout.strip() == job["TrainingJobName"]
    assert job["TrainingJobName"].startswith("dogclf-dev-")
    from sagemaker.core import image_uris

    image = image_uris.retrieve(  # the default: 2.13, an Amazon Linux 2023 image
        framework="pytorch-amzn2023",
        region="us-east-1",
        version="2.13",
        py_version="py312",
        instance_type="ml.m5.large",
        image_scope="training",
    )
    spec = job["AlgorithmSpecification"]
    assert spec["TrainingImage"] == image
    assert spec["MetricDefinitions"] == METRIC_DEFINITIONS
    assert job["RoleArn"] == ROLE
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]
    }
    assert channels == {s: f"{DATA}/{s}/" for s in ("train", "valid", "test")}
    hps = job["HyperParameters"]
    cfg = load_config()
    # JSON-encoded, as the SageMaker SDK sends them (the toolkit json-decodes each).
    for key, value in hyperparameter_values(cfg.training).items():
        assert hps[key] == json.dumps(value)
    assert hps["sagemaker_program"] == json.dumps(ENTRY_SCRIPT)
    assert hps["sagemaker_torch_distributed_enabled"] == "true"  # the torchrun launcher
    code = json.loads(hps["sagemaker_submit_directory"])
    assert code.startswith(f"s3://{BUCKET}/dogclf/dev/code/") and code.endswith("/sourcedir.tar.gz")
    boto3.client("s3").head_object(Bucket=BUCKET, Key=code.removeprefix(f"s3://{BUCKET}/"))
    assert job["ResourceConfig"]["InstanceCount"] == 2
    assert job["ResourceConfig"]["InstanceType"] == "ml.m5.large"
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert job["CheckpointConfig"] == {
        "S3Uri": f"s3://{BUCKET}/dogclf/dev/checkpoints/{job['TrainingJobName']}/",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/dogclf/dev/models"
    tags = boto3.client("sagemaker").list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
    assert {"Key": "dogclf:stage", "Value": "dev"} in tags


def test_single_instance_on_demand_has_no_launcher_or_checkpoints(project: Project) -> None:
    assert project.run("train-sagemaker", "--no-wait").exit_code == 0
    job = only_job()
    assert "sagemaker_torch_distributed_enabled" not in job["HyperParameters"]
    assert job["EnableManagedSpotTraining"] is False
    assert "CheckpointConfig" not in job
    assert job["ResourceConfig"]["InstanceCount"] == 1


def test_explicit_image_uri_is_used_verbatim(project: Project) -> None:
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-torch:1"
    result = project.run("train-sagemaker", "--no-wait", env={"DOGCLF_TRAINING__IMAGE_URI": image})
    assert result.exit_code == 0, result.output
    assert only_job()["AlgorithmSpecification"]["TrainingImage"] == image


def test_wait_streams_logs_and_points_latest_at_the_model(project: Project) -> None:
    project.script(
        "training-job",
        ["InProgress", "InProgress", "Completed"],
        log_lines=["epoch 1/1 train_loss=1.0", "valid_accuracy=0.750000;"],
        metrics={"valid_accuracy": 0.75, "test_accuracy": 0.7},
    )
    result = project.run("train-sagemaker", "--poll-interval", "0", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert "valid_accuracy=0.750000;" in result.stderr  # the job's log, streamed
    assert "InProgress (Training)" in result.stderr and "Completed" in result.stderr
    job = only_job()
    assert out["model_data"] == job["ModelArtifacts"]["S3ModelArtifacts"]
    latest = read_latest(AwsContext(), load_config())
    assert latest is not None
    assert latest.model_data == out["model_data"]
    assert latest.metrics == {"valid_accuracy": 0.75, "test_accuracy": 0.7}
    assert latest.source == f"train-sagemaker:{job['TrainingJobName']}"


def test_failed_job_exits_1_with_reason_and_last_log_lines(project: Project) -> None:
    project.script(
        "training-job",
        ["InProgress", "Failed"],
        failure_reason="AlgorithmError: ExecuteUserScriptError: CUDA out of memory",
        log_lines=["epoch 1/10", "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"],
    )
    result = project.run("train-sagemaker", "--poll-interval", "0")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert "failed: AlgorithmError: ExecuteUserScriptError: CUDA out of memory" in errors[0]
    assert "  RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB" in result.stderr
    assert "Hint:" in result.stderr and "Traceback" not in result.output
    assert read_latest(AwsContext(), load_config()) is None  # the pointer is untouched


def test_rerun_follows_the_running_twin_instead_of_paying_twice(project: Project) -> None:
    project.script("training-job", ["InProgress"])
    assert project.run("train-sagemaker", "--no-wait").exit_code == 0
    plan = json.loads(project.run("train-sagemaker", "--dry-run", "--json").stdout)["plan"]
    assert plan["counts"]["create"] == 0
    assert any("already running" in s["message"] for s in plan["steps"])


def test_dry_run_creates_nothing_and_shows_the_request(project: Project) -> None:
    before = resources()
    result = project.run("train-sagemaker", "--dry-run", "--json", env=SPOT_2)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["request"]["ResourceConfig"]["InstanceCount"] == 2
    assert [s["action"] for s in out["plan"]["steps"]] == ["create", "create"]
    assert resources() == before
    tune = project.run("train-sagemaker", "--tune", "--dry-run")
    assert tune.exit_code == 0 and resources() == before


def test_missing_data_and_role_are_one_line_errors(project: Project, aws: Emulator) -> None:
    no_role = project.run("train-sagemaker", env={"DOGCLF_AWS__ROLE_ARN": ""})
    assert no_role.exit_code == 1
    other = project.run("train-sagemaker", env={"DOGCLF_STAGE": "prod"})
    assert other.exit_code == 1
    assert "no training data under s3://dogclf-test-bucket/dogclf/prod/data/" in other.stderr
    assert "dogclf upload" in other.stderr


def test_tuning_job_carries_ranges_objective_and_reports_best(project: Project) -> None:
    result = project.run("train-sagemaker", "--tune", "--poll-interval", "0", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    sm = boto3.client("sagemaker")
    tuning = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=out["tuning_job"])
    config = tuning["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Bayesian"
    assert config["HyperParameterTuningJobObjective"] == {
        "Type": "Maximize",
        "MetricName": "valid_accuracy",
    }
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2}
    ranges = config["ParameterRanges"]
    assert ranges["ContinuousParameterRanges"] == [
        {"Name": "lr", "MinValue": "0.001", "MaxValue": "0.1", "ScalingType": "Logarithmic"}
    ]
    assert ranges["CategoricalParameterRanges"] == [
        {"Name": "batch-size", "Values": ["32", "64", "128", "256", "512"]}
    ]
    assert ranges["IntegerParameterRanges"] == [
        {"Name": "epochs", "MinValue": "2", "MaxValue": "10", "ScalingType": "Auto"}
    ]
    definition = tuning["TrainingJobDefinition"]
    static = definition["StaticHyperParameters"]
    assert not {"lr", "batch-size", "epochs"} & set(static) and static["arch"] == '"tiny_cnn"'
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    # The best job: the highest objective among the tuning job's own training jobs.
    children = sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=out["tuning_job"],
        SortBy="FinalObjectiveMetricValue",
        SortOrder="Descending",
    )["TrainingJobSummaries"]
    assert len(children) == 4
    best = children[0]
    assert out["best_training_job"] == best["TrainingJobName"]
    assert out["hyperparameters"] == best["TunedHyperParameters"]
    assert out["objective"]["Value"] == best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
    artifact = sm.describe_training_job(TrainingJobName=best["TrainingJobName"])["ModelArtifacts"]
    assert out["model_data"] == artifact["S3ModelArtifacts"]
    latest = read_latest(AwsContext(), load_config())
    assert latest is not None and latest.model_data == out["model_data"]


def test_hyperband_tunes_epochs_as_its_resource(project: Project) -> None:
    env = {"DOGCLF_HPO__STRATEGY": "Hyperband"}
    out = json.loads(
        project.run("train-sagemaker", "--tune", "--dry-run", "--json", env=env).stdout
    )
    config = out["request"]["HyperParameterTuningJobConfig"]
    assert config["ParameterRanges"]["IntegerParameterRanges"] == []
    assert config["StrategyConfig"] == {
        "HyperbandStrategyConfig": {"MinResource": 2, "MaxResource": 10}
    }
    assert config["TrainingJobEarlyStoppingType"] == "Off"
    assert out["request"]["TrainingJobDefinition"]["StaticHyperParameters"]["epochs"] == "10"
    grid = project.run(
        "train-sagemaker", "--tune", "--dry-run", env={"DOGCLF_HPO__STRATEGY": "Grid"}
    )
    assert grid.exit_code == 1 and "Grid" in grid.stderr


def test_failed_tuning_job_exits_1_with_reason(project: Project) -> None:
    project.script(
        "tuning-job",
        ["InProgress", "Failed"],
        failure_reason="No training job succeeded after 5 attempts",
    )
    result = project.run("train-sagemaker", "--tune", "--poll-interval", "0")
    assert result.exit_code == 1
    assert "failed: No training job succeeded after 5 attempts" in result.stderr


def test_unquote_tuned_hyperparameters() -> None:
    assert unquote('"64"') == "64"
    assert unquote('"adamw"') == "adamw"
    assert unquote("0.0123") == "0.0123"
    assert unquote('"') == '"'


def test_source_bundle_is_deterministic_and_self_contained(tmp_path: Path) -> None:
    first, second = build_bundle(ENTRY_MODULE), build_bundle(ENTRY_MODULE)
    assert first.data == second.data and first.digest == second.digest
    with tarfile.open(fileobj=io.BytesIO(first.data)) as tar:
        members = tar.getmembers()
        assert all(m.mtime == 0 and m.uid == 0 for m in members)
        names = [m.name for m in members]
        tar.extractall(tmp_path, filter="data")
    assert ENTRY_SCRIPT in names and "dogclf/training/train.py" in names
    assert "dogclf/model/preprocess.py" in names
    assert not any(n.startswith(("dogclf/aws/", "dogclf/commands/")) for n in names)
    # The container runs the entry script from the unpacked folder: the bundled package
    # must be the one imported, and it must be enough to start the training program.
    where = subprocess.run(
        [sys.executable, "-c", "import dogclf; print(dogclf.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(tmp_path))
    started = subprocess.run(
        [sys.executable, ENTRY_SCRIPT, "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert started.returncode == 0, started.stderr
    assert "--epochs" in started.stdout


@pytest.mark.slow
def test_local_job_downloads_data_trains_and_uploads(project: Project) -> None:
    """`--local` with no local data folder: the S3 data is downloaded, the real training
    core runs under AWS's training launcher, the model goes to S3 and latest."""
    result = project.run("train-sagemaker", "--local", "--upload", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    model_tar = Path(out["model_tar"])
    assert model_tar.is_file()
    with tarfile.open(model_tar) as tar:
        assert {"model.pt", "labels.json", "metrics.json"} <= set(tar.getnames())
    # What a script reads: the headline figures, not the history or N x N confusion counts.
    assert {"test", "valid", "best_epoch"} <= set(out["metrics"])
    assert not {"history", "test_confusion"} & set(out["metrics"])
    assert (project.root / ".dogclf/jobs/data/train").is_dir()
    latest = read_latest(AwsContext(), load_config())
    assert latest is not None and latest.model_data == out["model_data"]
    key = out["model_data"].removeprefix(f"s3://{BUCKET}/")
    assert (
        boto3.client("s3").head_object(Bucket=BUCKET, Key=key)["ContentLength"]
        == model_tar.stat().st_size
    )


def test_one_multi_gpu_instance_runs_torchrun(project: Project) -> None:
    """Item 4: one ml.g5.12xlarge (4 GPUs) gets the launcher's torchrun flag, so the
    launcher starts a process per GPU instead of training on one."""
    env = {"DOGCLF_TRAINING__INSTANCE_TYPE": "ml.g5.12xlarge"}
    result = project.run("train-sagemaker", "--no-wait", env=env)
    assert result.exit_code == 0, result.output
    job = only_job()
    assert job["ResourceConfig"]["InstanceCount"] == 1
    assert job["HyperParameters"][TORCH_DISTRIBUTED] == "true"
    assert "torchrun (4 process(es) each)" in result.stderr


def test_one_cpu_instance_runs_the_program_directly(project: Project) -> None:
    env = {"DOGCLF_TRAINING__INSTANCE_TYPE": "ml.m5.xlarge"}
    assert project.run("train-sagemaker", "--no-wait", env=env).exit_code == 0
    assert TORCH_DISTRIBUTED not in only_job()["HyperParameters"]


def test_gpu_table_agrees_with_the_sdks() -> None:
    """dogclf's GPU counts against the SageMaker SDK's own table, wherever both have a type."""
    import importlib.util

    spec = importlib.util.find_spec("sagemaker")
    assert spec is not None and spec.submodule_search_locations
    sdk_file = Path(spec.submodule_search_locations[0], "core/image_uri_config")
    sdk = json.loads((sdk_file / "instance_gpu_info.json").read_text())["us-east-1"]
    shared = set(sdk) & set(GPU_COUNTS)
    assert len(shared) >= 15
    assert {t: GPU_COUNTS[t] for t in shared} == {t: sdk[t]["Count"] for t in shared}
    assert gpu_count("ml.m5.xlarge") == 0 and gpu_count("ml.g7.48xlarge") is None
    assert wants_torchrun("ml.g7.48xlarge", 1)  # unknown count: the launcher counts them
    assert not wants_torchrun("ml.g4dn.xlarge", 1) and wants_torchrun("ml.g4dn.xlarge", 2)


@pytest.mark.slow
def test_local_job_on_a_multi_gpu_type_goes_through_torchrun(
    project: Project, tmp_path: Path
) -> None:
    """The rehearsal of a 4-GPU job still runs here: the launcher starts torchrun with one
    process per GPU it finds (none here: one process, on CPU)."""
    env = {"DOGCLF_TRAINING__INSTANCE_TYPE": "ml.g5.12xlarge"}
    result = project.run("train-sagemaker", "--local", "--data", "data", "--json", env=env)
    assert result.exit_code == 0, result.output
    assert "torchrun --nnodes 1 --nproc_per_node 1" in result.stderr
    assert Path(json.loads(result.stdout)["model_tar"]).is_file()
