"""The frozen backbone's feature cache (issue 14): built once, reused by later runs and by a
tuning job's later trials, rebuilt when partial, shared out across torchrun ranks, safe
against two writers; without a frozen backbone nothing changes. The real training core on
small generated data, the real launcher and emulator for the tuning job."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest
import torch
from aws_support import BUCKET, CONFIG, Project, make_project

from dogclf.local.emulator import Emulator
from dogclf.local.moto_ext import enable_training_runtime
from dogclf.training import feature_cache as fc
from dogclf.training import train
from dogclf.training.synthetic import make_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cache-data") / "data"
    return make_dataset(root, classes=3, per_class=8, size_range=(32, 48), seed=5)


def core_args(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "--data-dir", str(data), "--model-dir", str(out / "model"),
        "--checkpoint-dir", str(out / "checkpoints"), "--feature-cache-dir", str(cache),
        "--arch", "tiny_cnn", "--freeze-backbone", "true", "--epochs", "2",
        "--batch-size", "4", "--image-size", "32", "--lr", "0.01", "--num-workers", "0",
        "--patience", "0", "--print-freq", "1", *extra,
    ]  # fmt: skip


def run_core(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    lines: list[str] = []
    result = train.main(train.parse_args(argv, environ={}), train.Hooks(log=lines.append))
    return result.metrics, lines


def torchrun(argv: list[str]) -> subprocess.CompletedProcess[str]:
    drop = ("SM_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_", "TRAINING_JOB_NAME")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", "-m", "dogclf.training.train", *argv]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_ranks_build_shares_later_runs_reuse_and_a_partial_cache_is_rebuilt(
    data: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    # Two ranks each run the backbone over half of every split; together the whole cache.
    quick = ("--epochs", "1", "--int8-min-agreement", "101")  # int8: checked once, below
    proc = torchrun(core_args(data, tmp_path / "ddp", cache, *quick))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    built = json.loads((tmp_path / "ddp" / "model" / "metrics.json").read_text())
    info = built["feature_cache"]
    assert info["status"] == "built" and info["images_per_s"] > 0 and info["dtype"] == "float16"
    assert "images/s, 2 ranks)" in proc.stdout and built["world_size"] == 2
    # 18 train images, 9 per rank (DDP on the head); a last batch of one sample is dropped
    # as the image loader drops it.
    assert built["samples_per_rank"] == [8, 8]
    folder = cache / info["key"]
    train_split = torch.load(folder / "train.pt", weights_only=True)
    assert train_split["features"].shape == (1, 18, 64)  # 1 view (eval transform), 18 images
    assert train_split["files"] == sorted(train_split["files"]) and len(train_split["files"]) == 18
    # A later run of the same settings and images reuses it: no backbone pass.
    metrics, lines = run_core(core_args(data, tmp_path / "one", cache))
    assert metrics["feature_cache"]["status"] == "reused"
    assert metrics["feature_cache"]["key"] == info["key"]
    cache_line = next(i for i, line in enumerate(lines) if line.startswith("feature cache: "))
    assert cache_line < next(i for i, line in enumerate(lines) if line.startswith("epoch 1/2"))
    # Same shape of metrics as a run without the cache; model.tar.gz holds the whole
    # network (backbone + head), never the cache.
    assert {"train", "valid", "test", "best_epoch", "history", "int8"} <= set(metrics)
    state = torch.load(tmp_path / "one" / "model" / "model.pt", weights_only=True)["state_dict"]
    assert "features.0.weight" in state and "fc.weight" in state
    assert not any(p.suffix == ".pt" and "train" in p.name for p in (tmp_path / "one").rglob("*"))
    # A partial cache (a truncated file, as an interrupted S3 sync leaves it) is detected
    # and rebuilt; one process computes exactly what the two ranks did, in the same order.
    saved = train_split["features"].clone()
    (folder / "train.pt").write_bytes((folder / "train.pt").read_bytes()[:100])
    metrics, lines = run_core(core_args(data, tmp_path / "again", cache, *quick))
    assert metrics["feature_cache"]["status"] == "built"
    assert any("incomplete or stale; rebuilding" in line for line in lines)
    assert any("images/s" in line and "feature cache: 4/" in line for line in lines)
    rebuilt = torch.load(folder / "train.pt", weights_only=True)["features"]
    assert torch.allclose(rebuilt.float(), saved.float(), atol=1e-2)
    assert not [p.name for p in cache.iterdir() if p.name.startswith(".")]  # no leftovers


def test_other_image_bytes_give_another_key_and_no_frozen_backbone_means_no_cache(
    data: Path, tmp_path: Path
) -> None:
    from dogclf.training.data import scan_dataset, split_dirs

    copy = shutil.copytree(data, tmp_path / "data")

    def key() -> str:
        found = scan_dataset(split_dirs(copy))
        return fc.cache_key({"arch": "x", "files": fc.files_identity(found.dirs, found.samples)})

    before = key()
    image = next((copy / "train").rglob("*.jpg"))
    os.utime(image)  # a new mtime alone (every SageMaker job downloads afresh): same key
    assert key() == before
    image.write_bytes(next((copy / "valid").rglob("*.jpg")).read_bytes())  # same name, new bytes
    assert key() != before
    quick = ("--epochs", "1", "--int8-min-agreement", "101", "--freeze-backbone", "false")
    plain, lines = run_core(core_args(copy, tmp_path / "c", tmp_path / "none", *quick))
    assert plain["feature_cache"] is None and not (tmp_path / "none").exists()
    assert not any(line.startswith("feature cache") for line in lines)


def _write_many(root: str, key: str, fill: float) -> None:
    splits = {
        split: fc.SplitFeatures(torch.full((1, 50, 256), fill), torch.zeros(50).long(), ["x"] * 50)
        for split in fc.SPLITS
    }
    for _ in range(5):
        fc.write(Path(root), key, splits, {})


def test_two_processes_writing_the_same_key_leave_one_whole_copy(tmp_path: Path) -> None:
    key = "k" * 64
    ctx = multiprocessing.get_context("fork")
    writers = [ctx.Process(target=_write_many, args=(str(tmp_path), key, v)) for v in (1.0, 2.0)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    assert all(w.exitcode == 0 for w in writers)
    loaded = fc.load(tmp_path / key, key)
    assert loaded is not None
    values = {float(loaded[s].features.unique().item()) for s in fc.SPLITS}
    assert len(values) == 1  # every split from the same writer: rename-or-discard
    assert sorted(p.name for p in tmp_path.iterdir()) == [key]
    assert fc.load(tmp_path / key, "other" + key[5:]) is None  # another key is not this one


TUNING_CONFIG = CONFIG.replace(
    "freeze_backbone = false", "freeze_backbone = true\nint8_min_agreement = 101"
).replace(
    "[hpo]\nmax_jobs = 4\nmax_parallel_jobs = 2",
    "[hpo]\nmax_jobs = 2\nmax_parallel_jobs = 1\nepochs_min = 1\nepochs_max = 1\n"
    'batch_sizes = [4, 8]\nstrategy = "Random"',
)


@pytest.fixture
def project(aws: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = make_project(tmp_path, aws, monkeypatch)
    (tmp_path / "dogclf.toml").write_text(TUNING_CONFIG)
    enable_training_runtime(aws.url, str(tmp_path / "jobs"))
    return project


def test_the_second_tuning_trial_reuses_the_first_trials_cache(project: Project) -> None:
    assert project.run("upload", "data").exit_code == 0
    out = project.run_json("train-sagemaker", "--tune", "--poll-interval", "0.05")
    name = out["tuning_job"]
    sm = boto3.client("sagemaker")
    trials = sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name, SortBy="CreationTime", SortOrder="Ascending"
    )["TrainingJobSummaries"]
    assert [t["TrainingJobStatus"] for t in trials] == ["Completed", "Completed"]
    # The trials ran one after the other (MaxParallelTrainingJobs 1), with the tuning job's
    # CheckpointConfig: the first built the cache there, the second received it.
    seen = []
    for trial in trials:
        job = sm.describe_training_job(TrainingJobName=trial["TrainingJobName"])
        assert job["CheckpointConfig"]["S3Uri"].endswith(f"/checkpoints/{name}/")
        model = project.root / "jobs" / trial["TrainingJobName"] / "model"
        seen.append(json.loads((model / "metrics.json").read_text())["feature_cache"])
    assert [s["status"] for s in seen] == ["built", "reused"] and seen[0]["key"] == seen[1]["key"]
    listed = boto3.client("s3").list_objects_v2(
        Bucket=BUCKET, Prefix=f"dogclf/dev/checkpoints/{name}/"
    )["Contents"]
    keys = {o["Key"].removeprefix(f"dogclf/dev/checkpoints/{name}/") for o in listed}
    assert f"feature-cache/{seen[0]['key']}/manifest.json" in keys
    assert out["feature_caches_shared"] == [seen[0]["key"]]  # to the stage prefix, once
    assert {f"{t['TrainingJobName']}/checkpoint.pt" for t in trials} <= keys  # one each
    # The best trial's model is a real one: the whole network.
    with tarfile.open(
        project.root / "jobs" / out["best_training_job"] / "output/model.tar.gz"
    ) as t:
        assert "model.pt" in t.getnames()


def test_a_later_job_receives_the_cache_through_the_stage_channel(project: Project) -> None:
    """Issue 14, "later jobs receive it": job 1 builds the cache in its checkpoint folder and
    train-sagemaker copies it to the stage prefix; job 2 (another name, another checkpoint
    URI) gets that prefix as the feature_cache channel and reuses it; status lists it and
    teardown removes it with the checkpoints."""
    assert project.run("upload", "data").exit_code == 0
    first = project.run_json("train-sagemaker", "--poll-interval", "0.05")
    stage = "dogclf/dev/checkpoints/feature-cache/"
    assert len(first["feature_caches_shared"]) == 1
    key = first["feature_caches_shared"][0]
    plan = project.run_json("train-sagemaker", "--dry-run")
    line = next(s for s in plan["plan"]["steps"] if s["resource"] == "input channel")
    assert line["message"].startswith(f"feature cache channel feature_cache: s3://{BUCKET}/{stage}")
    second = project.run_json("train-sagemaker", "--poll-interval", "0.05")
    assert second["job"] != first["job"] and second["feature_caches_shared"] == []  # kept once
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName=second["job"])
    assert job["CheckpointConfig"]["S3Uri"].endswith(f"/checkpoints/{second['job']}/")
    channel = next(c for c in job["InputDataConfig"] if c["ChannelName"] == "feature_cache")
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/{stage}"
    metrics = project.root / "jobs" / second["job"] / "model" / "metrics.json"
    cache = json.loads(metrics.read_text())["feature_cache"]
    assert (cache["status"], cache["key"], cache["source"]) == (
        "reused",
        key,
        "feature_cache channel",
    )
    assert "/input/data/feature_cache/" in cache["path"]  # read in place from the channel
    # The second job left no copy of it under its own checkpoint URI.
    s3 = boto3.client("s3")
    own = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"dogclf/dev/checkpoints/{second['job']}/")
    assert not any("feature-cache/" in o["Key"] for o in own.get("Contents", []))
    status = project.run_json("status")
    shown = [r for r in status["resources"] if r["kind"] == "feature caches"]
    assert shown and shown[0]["details"].startswith("1 complete")
    assert project.run("teardown", "--yes").exit_code == 0
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=stage)["KeyCount"] == 0
