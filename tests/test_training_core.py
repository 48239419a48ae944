"""The real training core on generated data, CPU: learning, artifact, resume, torchrun."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from dogclf.errors import DogclfError
from dogclf.model.inference import optimize_for_cpu
from dogclf.model.metrics import METRIC_DEFINITIONS
from dogclf.model.network import build_model, cpu_has_native_bf16
from dogclf.training import train
from dogclf.training.frozen import frozen_backbone, scripted_for_cpu
from dogclf.training.synthetic import make_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dogimages") / "data"
    return make_dataset(root, classes=4, per_class=20, size_range=(48, 80), seed=3)


def clean_env() -> dict[str, str]:
    """No SageMaker or torch.distributed variables from the outer shell."""
    drop = ("SM_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_", "TRAINING_JOB_NAME")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def core_args(data: Path, out: Path, *extra: str, epochs: int = 4) -> list[str]:
    return [
        "--data-dir", str(data), "--model-dir", str(out / "model"),
        "--checkpoint-dir", str(out / "checkpoints"), "--arch", "tiny_cnn",
        "--epochs", str(epochs), "--batch-size", "8", "--image-size", "48", "--lr", "0.01",
        "--num-workers", "0", "--patience", "0", *extra,
    ]  # fmt: skip


def run_module(
    args: list[str], *, launcher: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [*(launcher or [sys.executable]), *args]
    return subprocess.run(command, capture_output=True, text=True, env=clean_env(), timeout=600)


def test_small_model_learns_and_writes_the_artifact(data: Path, tmp_path: Path) -> None:
    tar = tmp_path / "model.tar.gz"
    proc = run_module(
        ["-m", "dogclf.training.train", *core_args(data, tmp_path, "--pack", str(tar))]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.6  # 4 classes: chance is 0.25
    assert metrics["epochs_run"] == 4 and 1 <= metrics["best_epoch"] <= 4
    assert set(metrics) >= {"train", "valid", "test", "best_epoch", "epochs_run", "hyperparameters"}

    # The printed lines are what SageMaker parses: every metric, with the MetricDefinitions.
    parsed = {
        d["Name"]: [float(m) for m in re.findall(d["Regex"], proc.stdout)]
        for d in METRIC_DEFINITIONS
    }
    assert len(parsed["train_loss"]) == 4 and len(parsed["valid_accuracy"]) == 5  # + final best
    assert parsed["test_accuracy"] == [pytest.approx(metrics["test"]["accuracy"], abs=1e-6)]
    assert parsed["valid_accuracy"][-1] == pytest.approx(metrics["valid"]["accuracy"], abs=1e-6)

    # model.tar.gz: the SageMaker layout, files at the root, labels from the folders.
    with tarfile.open(tar) as archive:
        names = set(archive.getnames())
        labels = json.load(archive.extractfile("labels.json"))  # type: ignore[arg-type]
    assert {
        "model.pt",
        "labels.json",
        "metrics.json",
        "code/inference.py",
        "code/network.py",
        "code/archs.py",
        "code/preprocess.py",
    } <= names
    assert "code/requirements.txt" not in names  # the image would pip-install it at start
    folders = sorted(p.name for p in (data / "train").iterdir())
    assert labels == [f.split(".", 1)[1] for f in folders]
    saved = torch.load(tmp_path / "model" / "model.pt", weights_only=True)
    assert saved["format_version"] == 1 and saved["arch"] == "tiny_cnn"
    assert saved["num_classes"] == 4 and saved["image_size"] == 48
    model = build_model("tiny_cnn", 4)
    model.load_state_dict(saved["state_dict"])


KILL_DRIVER = textwrap.dedent(
    """
    # Real SIGKILL in the middle of epoch 3, after epoch 2's checkpoint (a spot interruption).
    import os, signal, sys
    from dogclf.training import checkpoint, data, train

    saved = []
    real_save, real_collate = checkpoint.save_checkpoint, data.collate

    def save(directory, state):
        path = real_save(directory, state)
        saved.append(state["epoch"])
        return path

    def collate(batch):
        if saved and saved[-1] == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_collate(batch)

    checkpoint.save_checkpoint, data.collate = save, collate
    sys.exit(train.cli(sys.argv[1:]))
    """
)


def test_resume_after_a_kill_continues_from_the_saved_epoch(data: Path, tmp_path: Path) -> None:
    driver = tmp_path / "kill_driver.py"
    driver.write_text(KILL_DRIVER)
    args = core_args(data, tmp_path, epochs=4)
    killed = run_module([str(driver), *args])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert "epoch 2/4 done" in killed.stdout and "epoch 3/4 done" not in killed.stdout
    state = torch.load(tmp_path / "checkpoints" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1  # 0-based: epochs 1 and 2 done
    # The kill found the best epoch so far in the model dir, marked as not complete.
    interim = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert interim["complete"] is False and interim["test"] is None

    resumed = run_module(["-m", "dogclf.training.train", *args])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "epoch 2 done" in resumed.stdout  # "resuming from ...: epoch 2 done"
    assert "epoch 1/4 done" not in resumed.stdout and "epoch 2/4 done" not in resumed.stdout
    assert "epoch 3/4 done" in resumed.stdout and "epoch 4/4 done" in resumed.stdout
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 4
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4]
    assert metrics["history"][2]["lr"] < metrics["history"][1]["lr"]  # the schedule went on


RECORD_DRIVER = textwrap.dedent(
    """
    # Records which training images this rank loaded; otherwise the plain entry point.
    import os, sys
    from pathlib import Path
    from dogclf.training import data, train

    out = Path(os.environ["RECORD_DIR"]) / f"rank{os.environ['RANK']}.txt"
    real_getitem = data.ImageFiles.__getitem__

    def getitem(self, index):
        path = self.samples[index][0]
        if f"{os.sep}train{os.sep}" in path:
            with open(out, "a") as handle:
                handle.write(path + "\\n")
        return real_getitem(self, index)

    data.ImageFiles.__getitem__ = getitem
    sys.exit(train.cli(sys.argv[1:]))
    """
)


def test_torchrun_two_processes_each_see_half_the_data(data: Path, tmp_path: Path) -> None:
    driver = tmp_path / "record_driver.py"
    driver.write_text(RECORD_DRIVER)
    os.environ["RECORD_DIR"] = str(tmp_path)
    try:
        proc = run_module(
            [str(driver), *core_args(data, tmp_path, epochs=1)],
            launcher=[
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node",
                "2",
            ],
        )
    finally:
        del os.environ["RECORD_DIR"]
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    seen = [set((tmp_path / f"rank{r}.txt").read_text().split()) for r in (0, 1)]
    every = {str(p) for p in (data / "train").rglob("*.jpg")}
    assert len(every) == 56
    assert len(seen[0]) == len(seen[1]) == 28  # half each ...
    assert not seen[0] & seen[1] and seen[0] | seen[1] == every  # ... and together all of it
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["samples_per_rank"] == [28, 28]
    assert metrics["valid"]["accuracy"] >= 0.0
    assert proc.stdout.count("data: 4 classes") == 1  # only rank 0 talks


def test_frozen_backbone_keeps_imagenet_statistics_and_trains_the_head(
    data: Path, tmp_path: Path
) -> None:
    extra = ("--arch", "resnet18", "--freeze-backbone", "true", "--image-size", "64")
    args = train.parse_args(core_args(data, tmp_path, *extra, epochs=1), environ={})
    assert args.freeze_backbone and args.image_size == 64  # later arguments win
    lines: list[str] = []
    result = train.main(args, train.Hooks(log=lines.append))
    # amp is on by default: a CPU with native bf16 runs the frozen backbone in bf16.
    expected = "bfloat16-backbone" if cpu_has_native_bf16() else "fp32"
    assert any(f"precision={expected}" in line for line in lines)
    torch.manual_seed(args.seed)  # the run built its model right after this seed
    initial = build_model("resnet18", 4, freeze_backbone=True).state_dict()
    trained = torch.load(tmp_path / "model" / "model.pt", weights_only=True)["state_dict"]
    backbone = [k for k in initial if not k.startswith("fc.")]
    # Weights and batch-norm running statistics of the frozen part did not move at all.
    assert all(torch.equal(initial[k], trained[k]) for k in backbone)
    assert not torch.equal(initial["fc.weight"], trained["fc.weight"])
    assert result.metrics["epochs_run"] == 1


def test_fast_frozen_path_computes_what_the_plain_model_computes() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", 5, freeze_backbone=True).eval()
    fast = frozen_backbone(model, "resnet18", device=torch.device("cpu")).eval()
    assert fast.micro_batch == 4  # on a CPU: 10 images run as 4 + 4 + 2, same answers
    x = torch.randn(10, 3, 64, 64)
    with torch.inference_mode():
        expected = model(x)
        got = fast(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(expected, got, atol=1e-4, rtol=1e-4)
    assert fast.head is model.fc  # the head trained is the one saved


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_scripted_cpu_backbone_computes_what_the_plain_model_computes(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(arch, 5, freeze_backbone=True).eval()
    fast = frozen_backbone(model, arch, device=torch.device("cpu"), image_size=64).eval()
    assert isinstance(fast.backbone, torch.jit.ScriptModule)  # traced at 64, not eager
    x = torch.randn(7, 3, 64, 64)  # 4 + 3: neither is the size it was traced or checked at
    with torch.inference_mode():
        expected = model(x)
        got = fast(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(expected, got, atol=1e-4, rtol=1e-4)


def test_a_backbone_whose_trace_fixes_the_batch_size_stays_eager() -> None:
    class FixedBatch(nn.Module):  # a Python int from a shape: the trace bakes in batch 1
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3)).reshape(int(x.shape[0]), -1)

    body = FixedBatch().eval()  # freezing needs eval mode: in train mode the trace fails first
    assert isinstance(optimize_for_cpu(body, 8), torch.jit.ScriptModule)  # it does trace
    scripted = scripted_for_cpu(body, 8)
    assert scripted is body  # the probe at batch 2 disagreed: eager kept


def test_bf16_backbone_feeds_the_head_fp32_features_close_to_fp32() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", 5, freeze_backbone=True).eval()
    fast = frozen_backbone(
        model, "resnet18", device=torch.device("cpu"), autocast_dtype=torch.bfloat16
    ).train()
    x = torch.randn(4, 3, 64, 64)
    with torch.inference_mode():
        expected = model(x)
    logits = fast(x.contiguous(memory_format=torch.channels_last))
    assert logits.dtype == torch.float32
    assert torch.allclose(expected, logits, atol=0.05, rtol=0.05)  # bf16: ~3 digits
    logits.sum().backward()
    assert model.fc.weight.grad is not None and model.fc.weight.grad.dtype == torch.float32


def test_pretrained_weights_without_network_fail_fast_and_clearly(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))  # an empty weights cache
    for var in ("https_proxy", "HTTPS_PROXY"):  # a dead proxy: no network, whatever the host
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    args = train.parse_args(
        core_args(data, tmp_path, "--arch", "resnet18", "--pretrained", "true", epochs=1),
        environ={},
    )
    with pytest.raises(DogclfError) as err:
        train.main(args, train.Hooks(log=lambda _line: None))
    assert "ImageNet weights" in err.value.message and "pretrained" in (err.value.hint or "")
