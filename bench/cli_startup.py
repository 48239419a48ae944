"""`dogclf --help` start-up cost against a bare interpreter, measured in the same run.

Target (issue 2): median(dogclf --help) - median(python -c pass) <= 250 ms.
Run: python bench/cli_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

TARGET_MS = 250.0


def median_ms(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, capture_output=True, check=True)  # warm the page cache
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    dogclf = shutil.which("dogclf")
    cli = [dogclf, "--help"] if dogclf else [sys.executable, "-m", "dogclf", "--help"]
    baseline = median_ms([sys.executable, "-c", "pass"], args.runs)
    measured = median_ms(cli, args.runs)
    extra = measured - baseline
    print(f"python -c pass : {baseline:7.1f} ms (median of {args.runs})")
    print(f"dogclf --help  : {measured:7.1f} ms (median of {args.runs})")
    print(
        f"difference     : {extra:7.1f} ms  (target <= {TARGET_MS:.0f} ms) "
        f"{'OK' if extra <= TARGET_MS else 'OVER TARGET'}"
    )
    print(f"ratio          : {measured / baseline:.2f}x")
    return 0 if extra <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
