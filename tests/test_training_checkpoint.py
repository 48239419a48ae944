"""The checkpoint: what `save` writes, `restore` puts back, and which runs it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from dogclf.errors import DogclfError
from dogclf.training import checkpoint
from dogclf.training.checkpoint import Progress, Resumable


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
    checkpoint.save(tmp_path, run, progress, arch="tiny_cnn", labels=["a", "b"], args={"lr": 0.1})

    fresh = parts(seed=2)
    restored = checkpoint.restore(tmp_path, fresh, arch="tiny_cnn", labels=["a", "b"])
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
    checkpoint.save(tmp_path, run, progress, arch="tiny_cnn", labels=["a"], args={})
    state = torch.load(tmp_path / checkpoint.CHECKPOINT_FILE, weights_only=True)
    assert state["best_model"] is None and state["epoch"] == 0 and state["format_version"] == 1
    restored = checkpoint.restore(tmp_path, parts(seed=2), arch="tiny_cnn", labels=["a"])
    assert restored is not None and restored.best_weights is not None
    assert torch.equal(restored.best_weights["weight"], run.model.state_dict()["weight"])


def test_no_checkpoint_is_a_fresh_run_and_another_runs_is_refused(tmp_path: Path) -> None:
    assert checkpoint.restore(tmp_path, parts(seed=1), arch="tiny_cnn", labels=["a"]) is None
    run = parts(seed=1)
    progress = progress_after(1, best=0, weights=run.model.state_dict())
    checkpoint.save(tmp_path, run, progress, arch="tiny_cnn", labels=["a"], args={})
    with pytest.raises(DogclfError, match="from another run"):
        checkpoint.restore(tmp_path, parts(seed=1), arch="resnet18", labels=["a"])
    with pytest.raises(DogclfError, match="from another run"):
        checkpoint.restore(tmp_path, parts(seed=1), arch="tiny_cnn", labels=["a", "b"])
