"""Mixed precision (issue 12, item 3): bf16 only where the GPU has it natively, else fp16 with
a GradScaler; the fp16 + GradScaler step path is run for real on this CPU."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dogclf.training import train
from dogclf.training.distributed import DistInfo
from dogclf.training.engine import StepConfig, choose_precision, train_one_epoch


def choice_for(device: str, capability: tuple[int, int] | None, **kw: bool) -> tuple[str, str]:
    options = {"amp": True, "freeze_backbone": False, "cpu_native_bf16": False} | kw
    choice = choose_precision(device, capability, **options)
    return choice.label, choice.reason


def test_bf16_only_where_the_gpu_has_it_natively() -> None:
    # T4 (ml.g4dn, sm_75): torch.cuda.is_bf16_supported() says True there (emulated).
    assert choice_for("cuda", (7, 5)) == (
        "float16-autocast+GradScaler",
        "cuda sm_75: bf16 is not native",
    )
    assert choice_for("cuda", (7, 0))[0] == "float16-autocast+GradScaler"  # V100 (p3)
    assert choice_for("cuda", (8, 0)) == ("bfloat16-autocast", "cuda sm_80: native bf16")  # A100
    assert choice_for("cuda", (8, 6))[0] == "bfloat16-autocast"  # A10G (g5)
    assert choice_for("cuda", (9, 0)) == ("bfloat16-autocast", "cuda sm_90: native bf16")  # H100
    assert choice_for("cuda", (9, 0), amp=False) == ("fp32", "--amp false")
    fp16 = choose_precision("cuda", (7, 5), amp=True, freeze_backbone=True, cpu_native_bf16=True)
    assert fp16.amp_dtype is torch.float16 and fp16.grad_scaler and fp16.backbone_dtype is None


def test_on_a_cpu_only_a_frozen_backbone_and_only_with_native_bf16() -> None:
    native = {"freeze_backbone": True, "cpu_native_bf16": True}
    assert choice_for("cpu", None, **native) == ("bfloat16-backbone", "cpu: native bf16")
    assert choice_for("cpu", None, freeze_backbone=True) == ("fp32", "cpu: bf16 is not native")
    assert choice_for("cpu", None, cpu_native_bf16=True)[0] == "fp32"  # whole model trains
    assert choice_for("cpu", None, **native, amp=False) == ("fp32", "--amp false")
    cpu = choose_precision("cpu", None, amp=True, freeze_backbone=True, cpu_native_bf16=True)
    assert cpu.amp_dtype is None and not cpu.grad_scaler


@pytest.mark.parametrize(
    ("capability", "dtype", "scaler"),
    [((7, 5), torch.float16, True), ((8, 0), torch.bfloat16, False)],
)
def test_the_run_asks_the_gpu_for_its_capability_not_is_bf16_supported(
    monkeypatch: pytest.MonkeyPatch,
    capability: tuple[int, int],
    dtype: torch.dtype,
    scaler: bool,
) -> None:
    # No GPU on this host: the two CUDA queries are patched to answer as a T4 / an A100
    # would (a T4 answers is_bf16_supported() True through emulation, the old trap).
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    args = train.parse_args(["--arch", "tiny_cnn"], environ={})
    run = train.TrainingRun(args, train.Hooks(), torch.device("cuda", 0), DistInfo())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GradScaler("cuda") warns that CUDA is absent here
        choice, grad_scaler = run.precision()
    assert choice.amp_dtype is dtype
    assert isinstance(grad_scaler, torch.amp.GradScaler) is scaler


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def loader() -> DataLoader[tuple[torch.Tensor, ...]]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(12, 3, 8, 8, generator=generator)
    data = TensorDataset(images, torch.arange(12) % 3)
    return DataLoader(data, batch_size=4)


def test_fp16_autocast_with_a_grad_scaler_trains_on_this_cpu() -> None:
    model = small_model()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    step = StepConfig(torch.device("cpu"), amp_dtype=torch.float16)
    with step.autocast():
        assert model(torch.randn(1, 3, 8, 8)).dtype == torch.float16  # really fp16
    stats = train_one_epoch(model, nn.CrossEntropyLoss(), optimizer, loader(), step, scaler=scaler)
    assert stats.samples == 12 and stats.loss == stats.loss  # finite, not NaN
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights fp32
    assert scaler.get_scale() == 2.0**10  # no overflow: the scale stays


def test_the_grad_scaler_skips_a_step_whose_fp16_gradients_overflow() -> None:
    model = small_model()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)  # fp16 gradients become inf
    step = StepConfig(torch.device("cpu"), amp_dtype=torch.float16)
    train_one_epoch(model, nn.CrossEntropyLoss(), optimizer, loader(), step, scaler=scaler)
    assert scaler.get_scale() < 2.0**100  # backed off, once per overflowing step
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
