"""fp32 vs int8 (and bf16 where native) forward passes of resnet50 on this CPU, in one run.

fp32: what `dogclf serve` runs on a CPU without native bf16 (channels_last, TorchScript
frozen + optimize_for_inference). int8: dogclf/model/quantize.py's static post-training
quantization (x86 engine, head in fp32), calibrated on generated images. bf16: the fp32 plan
in bfloat16, measured only on a CPU that multiplies bf16 in hardware (emulated bf16 is
slower than fp32), so `auto`'s order (int8 before bf16) is checked where both are native.
Random weights: speed does not depend on them. The precisions alternate in rounds so load
from other work on the machine skews them alike.

Run: python bench/int8_throughput.py [--image-size 224] [--batch-size 16] [--seconds 20]
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings
from typing import Any

from machine import torch_line


def cpu_flags() -> str:
    from dogclf.model.quantize import _cpu_flags

    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile")
    flags = _cpu_flags()
    return " ".join(f"{name}={'yes' if name in flags else 'no'}" for name in wanted)


def rate(model: Any, batch: Any, seconds: float) -> float:
    import torch

    with torch.inference_mode():
        images, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            model(batch)
            images += len(batch)
        return images / (time.perf_counter() - start)


def models(image_size: int) -> tuple[Any, Any, Any | None, float]:
    """(fp32, int8, bf16 or None where not native, seconds int8's calibration took)."""
    import torch

    from dogclf.model import network, quantize
    from dogclf.model.inference import optimize_for_cpu

    torch.manual_seed(0)
    net = network.build_model("resnet50", 133).eval()
    fp32 = optimize_for_cpu(net.to(memory_format=torch.channels_last), image_size)
    bf16 = None
    if network.cpu_has_native_bf16():
        bf16_net = copy.deepcopy(net).to(torch.bfloat16)
        bf16 = optimize_for_cpu(bf16_net, image_size, torch.bfloat16)
    engine = quantize.int8_engine()
    if engine is None:
        raise SystemExit("no x86/fbgemm quantized engine here: int8 is unsupported on this host")
    calibration = [torch.randn(16, 3, image_size, image_size) for _ in range(2)]
    start = time.perf_counter()
    example = torch.zeros(1, 3, image_size, image_size)
    int8, _ = quantize.quantize_int8(net, calibration, example, engine)
    return fp32, int8, bf16, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0, help="per precision, in 2 rounds")
    args = parser.parse_args()
    import torch

    from dogclf.model.quantize import cpu_int8_fast

    print(torch_line())
    print(f"cpu: {torch.backends.cpu.get_cpu_capability()}; {cpu_flags()}")
    print(f"int8 picked by `auto` here: {cpu_int8_fast()}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp32, int8, bf16, calibrate_s = models(args.image_size)
    print(f"int8 calibration + conversion (32 images): {calibrate_s:.1f} s")
    size = args.image_size
    batch = torch.randn(args.batch_size, 3, size, size).contiguous(
        memory_format=torch.channels_last
    )
    legs = [("fp32 channels_last", fp32, batch), ("int8 (x86 engine)", int8, batch)]
    if bf16 is None:
        print("bf16: not native on this CPU (emulated is slower than fp32), not measured")
    else:
        legs.append(("bf16 channels_last", bf16, batch.to(torch.bfloat16)))
    rates: dict[str, list[float]] = {name: [] for name, _, _ in legs}
    for _, model, data in legs:
        rate(model, data, 2.0)  # warm-up: oneDNN/fbgemm pick kernels on the first calls
    for _ in range(2):
        for name, model, data in legs:
            rates[name].append(rate(model, data, args.seconds / 2))
    means = {name: sum(r) / len(r) for name, r in rates.items()}
    fp = means["fp32 channels_last"]
    print(f"resnet50 {size} px, batch {args.batch_size}, forward pass only:")
    for name, value in means.items():
        print(f"  {name:<19} {value:7.1f} img/s   {value / fp:.2f}x fp32")


if __name__ == "__main__":
    main()
