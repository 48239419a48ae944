"""int8 for CPU serving: torch's own static post-training quantization (x86/fbgemm engine).

STANDALONE FILE: copied into model.tar.gz as `code/quantize.py`; code/inference.py loads
the int8 model with it inside the SageMaker container, so stdlib and torch only.

Training (dogclf/training/train.py, rank 0, at the end) calibrates a copy of the best network
on images of the training split, checks its top-1 agreement with fp32 on the test split and
saves it as TorchScript (`model_int8.pt`): serving loads it with torch alone, no calibration
code, no data. `precisions.json` says whether int8 is usable (agreement >= the threshold).
"""

from __future__ import annotations

import copy
import json
import platform
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

INT8_FILE = "model_int8.pt"
PRECISIONS_FILE = "precisions.json"
DEFAULT_MIN_AGREEMENT = 99.0  # percent of test images with the same top-1 as fp32
CALIBRATION_IMAGES = 256  # train images the observers see at most
AGREEMENT_IMAGES = 1000  # test images compared at most
# ... and wall-clock budgets: the histogram observers cost several forward passes per image
# (resnet50 at 224 px on 2 busy cores: ~2.7 s per image), the run must not overrun for them.
CALIBRATION_BUDGET_S = 120.0
AGREEMENT_BUDGET_S = 180.0
# Left in fp32: the head's logits decide the top-1 between close classes, and a Linear of
# one image's features costs nothing beside the convolutions (measured: 95.8% -> 100%
# agreement on a resnet18 trained on generated data, see tests/test_int8.py).
FP32_MODULES = ("fc", "classifier")
_X86 = frozenset({"x86_64", "amd64", "x86", "i686"})


def int8_engine() -> str | None:
    """The quantized engine this host runs int8 on ("x86" or "fbgemm"), None without one."""
    if platform.machine().lower() not in _X86:
        return None
    engines = torch.backends.quantized.supported_engines
    return next((name for name in ("x86", "fbgemm") if name in engines), None)


def _qconfig_mapping(model: nn.Module, engine: str) -> Any:
    # torch.ao.quantization is deprecated in favour of torchao (not in the images); its
    # FX path still ships with torch 2.14 and the TorchScript it gives needs only torch.
    from torch.ao.quantization import get_default_qconfig_mapping

    # x86 default: per-channel symmetric int8 weights, histogram-calibrated activations.
    mapping = get_default_qconfig_mapping(engine)
    names = {name for name, _ in model.named_modules()}
    for name in FP32_MODULES:
        if name in names:
            mapping.set_module_name(name, None)
    return mapping


def quantize_int8(
    model: nn.Module, calibration: Iterable[torch.Tensor], example: torch.Tensor, engine: str
) -> tuple[torch.jit.ScriptModule, int]:
    """A frozen TorchScript int8 copy of `model` (left as it is), calibrated on the batches,
    and how many images calibrated it."""
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = engine
    float_model = copy.deepcopy(model).cpu().float().eval()
    example = example.cpu().float()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the deprecation notices above, tracer warnings
        prepared = prepare_fx(float_model, _qconfig_mapping(float_model, engine), (example,))
        images = 0
        for batch in calibration:
            prepared(batch.cpu().float())
            images += len(batch)
        quantized = convert_fx(prepared)
        traced = torch.jit.trace(quantized, example, check_trace=False)
        frozen: torch.jit.ScriptModule = torch.jit.freeze(traced.eval())
        return frozen, images


def within(batches: Iterable[torch.Tensor], seconds: float) -> Iterator[torch.Tensor]:
    """The batches until `seconds` have passed (at least one)."""
    deadline = time.monotonic() + seconds
    for batch in batches:
        yield batch
        if time.monotonic() >= deadline:
            return


def top1(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(batch.cpu().float().contiguous(memory_format=torch.channels_last)).argmax(1)


def agreement(
    reference: nn.Module, candidate: nn.Module, batches: Iterable[torch.Tensor]
) -> tuple[int, int]:
    """(images with the same top-1, images compared)."""
    same = total = 0
    for batch in batches:
        same += int((top1(reference, batch) == top1(candidate, batch)).sum())
        total += len(batch)
    return same, total


def save_int8(model: torch.jit.ScriptModule, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
        torch.jit.save(model, str(tmp))
    tmp.replace(path)


def load_int8(path: Path, image_size: int) -> torch.jit.ScriptModule:
    """The saved int8 model, run once on a dummy batch: raises if this torch cannot run it
    (no engine, an older TorchScript reader, a damaged file)."""
    engine = int8_engine()
    if engine is None:
        raise RuntimeError("no x86/fbgemm quantized engine on this host")
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model: torch.jit.ScriptModule = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        dummy = torch.zeros(2, 3, image_size, image_size).contiguous(
            memory_format=torch.channels_last
        )
        model(dummy)
    return model


def read_precisions(model_dir: Path) -> dict[str, Any]:
    """precisions.json, or what a model without it supports (fp32/bf16, no int8)."""
    path = Path(model_dir) / PRECISIONS_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("supported"), list):
        return {"supported": ["fp32", "bf16"], "int8": None}
    return doc


def int8_usable(model_dir: Path) -> bool:
    doc = read_precisions(model_dir)
    info = doc.get("int8")
    return "int8" in doc["supported"] and isinstance(info, dict) and info.get("usable") is True


def cpu_int8_fast() -> bool:
    """Whether int8 beats fp32 here: fbgemm's kernels need AVX2 at least (AVX-512 VNNI
    multiplies u8*s8 in one instruction). Measured with bench/int8_throughput.py: resnet50
    2.2x fp32 channels_last on a 2-core AVX2 EPYC; the issue measured ~4x on a VNNI Xeon."""
    if int8_engine() is None:
        return False
    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # an older torch: read the flags
        return bool(_cpu_flags() & {"avx2", "avx512_vnni", "avx_vnni"})
    return capability.upper().startswith(("AVX2", "AVX512"))


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()
