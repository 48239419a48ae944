"""The checkpoint: what `save` writes, `restore` puts back, and which runs it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from dogclf.errors import DogclfError
from dogclf.training import checkpoint, train
from dogclf.training.checkpoint import Progress, Resumable
from dogclf.training.synthetic import make_dataset

ARGS = {"arch": "tiny_cnn", "lr": 0.1, "batch_size": 8, "epochs": 2, "patience": 3}


def parts(seed: int) -> Resumable:
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5**epoch)
    return Resumable(model, optimizer, scheduler, scaler=None)


def one_step(run: Resumable) -> None:
    run.model(torch.ones(4, 3)).sum().backward()
    run.optimizer.step()
    run.scheduler.step()


def progress_after(epochs: int, best: int, weights: dict[str, torch.Tensor]) -> Progress:
    history = [{"epoch": e + 1, "valid_accuracy": 0.5} for e in range(epochs)]
    record = {"epoch": best, "valid_loss": 1.0, "valid_accuracy": 0.5}
    record |= {"train_loss": 1.0, "train_accuracy": 0.5}
    return Progress(epochs, record, weights, history, stale_epochs=epochs - 1 - best)


def test_restore_puts_back_what_save_wrote(tmp_path: Path) -> None:
    run = parts(seed=1)
    one_step(run)
    best_weights = {k: v.clone() for k, v in run.model.state_dict().items()}
    one_step(run)  # epoch 2 is not the best: the best weights travel separately
    progress = progress_after(2, best=0, weights=best_weights)
    checkpoint.save(tmp_path, run, progress, arch="tiny_cnn", labels=["a", "b"], args=ARGS)

    fresh = parts(seed=2)
    restored = checkpoint.restore(tmp_path, fresh, arch="tiny_cnn", labels=["a", "b"], args=ARGS)
    assert restored is not None and restored.next_epoch == 2 and restored.best_epoch == 1
    assert restored.history == progress.history and restored.stale_epochs == 1
    assert restored.best_weights is not None
    assert all(torch.equal(restored.best_weights[k], v) for k, v in best_weights.items())
    assert all(
        torch.equal(fresh.model.state_dict()[k], v) for k, v in run.model.state_dict().items()
    )
    assert fresh.optimizer.param_groups[0]["lr"] == run.optimizer.param_groups[0]["lr"] == 0.025
    assert fresh.scheduler.last_epoch == 2


def test_the_best_weights_are_not_stored_twice(tmp_path: Path) -> None:
    run = parts(seed=1)
    one_step(run)
    progress = progress_after(1, best=0, weights=run.model.state_dict())
    checkpoint.save(tmp_path, run, progress, arch="tiny_cnn", labels=["a"], args=ARGS)
    state = torch.load(tmp_path / checkpoint.CHECKPOINT_FILE, weights_only=True)
    assert state["best_model"] is None and state["epoch"] == 0 and state["format_version"] == 2
    restored = checkpoint.restore(tmp_path, parts(seed=2), arch="tiny_cnn", labels=["a"], args=ARGS)
    assert restored is not None and restored.best_weights is not None
    assert torch.equal(restored.best_weights["weight"], run.model.state_dict()["weight"])


def test_no_checkpoint_is_a_fresh_run_and_another_runs_is_refused(tmp_path: Path) -> None:
    assert (
        checkpoint.restore(tmp_path, parts(seed=1), arch="tiny_cnn", labels=["a"], args=ARGS)
        is None
    )
    run = parts(seed=1)
    progress = progress_after(1, best=0, weights=run.model.state_dict())
    checkpoint.save(tmp_path, run, progress, arch="tiny_cnn", labels=["a"], args=ARGS)
    with pytest.raises(DogclfError, match="from another run"):
        checkpoint.restore(tmp_path, parts(seed=1), arch="resnet18", labels=["a"], args=ARGS)
    with pytest.raises(DogclfError, match="from another run"):
        checkpoint.restore(tmp_path, parts(seed=1), arch="tiny_cnn", labels=["a", "b"], args=ARGS)


def test_other_hyperparameters_are_refused_more_epochs_resume(tmp_path: Path) -> None:
    # Item 5: a tuning trial must not resume another trial's checkpoint; what a spot
    # restart of the same job changes (nothing) or a user may raise (epochs) still resumes.
    run = parts(seed=1)
    one_step(run)
    progress = progress_after(1, best=0, weights=run.model.state_dict())
    checkpoint.save(tmp_path, run, progress, arch="tiny_cnn", labels=["a"], args=ARGS)
    for name, value in (("lr", 0.02), ("batch_size", 16), ("seed", 1), ("optimizer", "sgd")):
        with pytest.raises(DogclfError, match="other hyperparameters") as err:
            other = {**ARGS, name: value}
            checkpoint.restore(tmp_path, parts(seed=1), arch="tiny_cnn", labels=["a"], args=other)
        assert f"{name.replace('_', '-')} " in err.value.message
        assert "mix two runs" in err.value.message and "checkpoint-dir" in (err.value.hint or "")
    longer = {**ARGS, "epochs": 20, "patience": 0, "num_workers": 4, "device": "cuda"}
    resumed = checkpoint.restore(
        tmp_path, parts(seed=2), arch="tiny_cnn", labels=["a"], args=longer
    )
    assert resumed is not None and resumed.next_epoch == 1
    state = torch.load(tmp_path / checkpoint.CHECKPOINT_FILE, weights_only=True)
    assert state["hyperparameters"]["lr"] == 0.1 and state["hyperparameters"]["batch_size"] == 8


def test_an_older_checkpoint_without_hyperparameters_is_refused(tmp_path: Path) -> None:
    run = parts(seed=1)
    progress = progress_after(1, best=0, weights=run.model.state_dict())
    path = checkpoint.save(tmp_path, run, progress, arch="tiny_cnn", labels=["a"], args=ARGS)
    state = torch.load(path, weights_only=True)
    del state["hyperparameters"]
    checkpoint.atomic_save({**state, "format_version": 1}, path)
    with pytest.raises(DogclfError, match="checkpoint format 1, expected 2"):
        checkpoint.restore(tmp_path, parts(seed=1), arch="tiny_cnn", labels=["a"], args=ARGS)


def test_the_grad_scaler_state_travels_with_the_checkpoint(tmp_path: Path) -> None:
    # Item 3: fp16 runs carry a GradScaler; its scale must survive a spot restart, else the
    # resumed run re-learns it from 65536 with skipped steps. GradScaler("cpu") is real here.
    run = parts(seed=1)
    run.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1)
    run.scaler.scale(run.model(torch.ones(4, 3)).sum()).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()  # finite gradients, growth_interval 1: the scale doubles
    assert run.scaler.get_scale() == 2048.0
    progress = progress_after(1, best=0, weights=run.model.state_dict())
    checkpoint.save(tmp_path, run, progress, arch="tiny_cnn", labels=["a"], args=ARGS)
    fresh = parts(seed=2)
    fresh.scaler = torch.amp.GradScaler("cpu")
    checkpoint.restore(tmp_path, fresh, arch="tiny_cnn", labels=["a"], args=ARGS)
    assert fresh.scaler.get_scale() == 2048.0


def test_inside_a_training_job_checkpoints_go_in_its_own_folder() -> None:
    job = {"TRAINING_JOB_NAME": "tune-1-003-ab12cd34"}  # SageMaker sets it in the container
    shared, model = Path("/opt/ml/checkpoints"), Path("/opt/ml/model")
    assert train.checkpoint_dir_for(shared, model, job) == shared / "tune-1-003-ab12cd34"
    assert train.checkpoint_dir_for(None, model, job) == shared / "tune-1-003-ab12cd34"
    assert train.checkpoint_dir_for(None, Path("runs/a/model"), {}) == Path("runs/a/checkpoints")
    assert train.checkpoint_dir_for(shared, model, {"TRAINING_JOB_NAME": ""}) == shared


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dogimages") / "data"
    return make_dataset(root, classes=3, per_class=10, size_range=(40, 56), seed=7)


def run_trial(
    data: Path, out: Path, job: str, monkeypatch: pytest.MonkeyPatch, *extra: str
) -> list[str]:
    """The real training core in this process, as SageMaker starts a trial of `job`."""
    monkeypatch.setenv("TRAINING_JOB_NAME", job)
    argv = ["--data-dir", str(data), "--model-dir", str(out / job / "model")]
    argv += ["--checkpoint-dir", str(out / "checkpoints"), "--arch", "tiny_cnn"]
    argv += ["--batch-size", "8", "--image-size", "32", "--num-workers", "0", *extra]
    lines: list[str] = []
    train.main(train.parse_args(argv, environ={}), train.Hooks(log=lines.append))
    return lines


@pytest.mark.slow
def test_tuning_trials_sharing_a_checkpoint_prefix_never_resume_each_other(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Item 5: a tuning job gives every trial the same CheckpointConfig (one folder).
    first = run_trial(data, tmp_path, "tune-001", monkeypatch, "--lr", "0.01", "--epochs", "1")
    assert not any(line.startswith("resuming") for line in first)
    assert (tmp_path / "checkpoints" / "tune-001" / checkpoint.CHECKPOINT_FILE).is_file()
    assert not (tmp_path / "checkpoints" / checkpoint.CHECKPOINT_FILE).exists()
    second = run_trial(data, tmp_path, "tune-002", monkeypatch, "--lr", "0.05", "--epochs", "1")
    assert not any(line.startswith("resuming") for line in second)  # trained from scratch
    assert any(line.startswith("epoch 1/1 done") for line in second)
    assert (tmp_path / "checkpoints" / "tune-002" / checkpoint.CHECKPOINT_FILE).is_file()
    assert any(
        "precision=fp32 (cpu: mixed precision only for a frozen backbone)" in line
        for line in second
    )

    # A spot restart of trial 1 (same name, same hyperparameters) resumes it; raising
    # --epochs continues it.
    restart = run_trial(data, tmp_path, "tune-001", monkeypatch, "--lr", "0.01", "--epochs", "2")
    assert any(line.startswith("resuming from") and "tune-001" in line for line in restart)
    assert any(line.startswith("epoch 2/2 done") for line in restart)
    assert not any(line.startswith("epoch 1/2 done") for line in restart)

    # The same folder with other hyperparameters is another run's: refused, not mixed.
    with pytest.raises(DogclfError, match="other hyperparameters") as err:
        run_trial(data, tmp_path, "tune-001", monkeypatch, "--lr", "0.02", "--epochs", "3")
    assert "lr 0.01 there, 0.02 here" in err.value.message
