"""`upload`'s S3 sync against a plain sequential `upload_file` loop, same run, same server.

Targets (issue 5): on 2,000 small JPEGs the sync is >= 4x faster than the loop, and an
unchanged re-run takes <= 10% of the first sync.

The moto server is started here, in a child process (so it does not share the client's
GIL), in two settings, both printed:
  loopback  no added latency: every request costs only CPU. moto spends ~3 ms of CPU per
            PUT and ~0.2 ms per listed key in one Python process, which caps what client
            parallelism can gain on a small machine and what a re-run's listing costs
            relative to the uploads. Printed, not judged.
  rtt       the same server with --rtt-ms of latency added to each request (default 20 ms,
            a same-region S3 request for a small object), as on AWS, where per-request
            latency is what parallel upload hides. Both targets are judged here.
Run: python bench/upload_throughput.py [--files 2000] [--workers 16] [--rtt-ms 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TARGET_RATIO = 4.0
TARGET_RERUN = 0.10


def make_jpegs(root: Path, count: int) -> list[Path]:
    """`count` small distinct JPEGs in the dogImages layout (about 700 bytes each)."""
    from PIL import Image

    files = []
    for i in range(count):
        split = ("train", "valid", "test")[i % 3]
        folder = root / split / f"{i % 20 + 1:03d}.Breed_{i % 20}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"img_{i:05d}.jpg"
        Image.new("RGB", (64, 48), ((i * 7) % 256, (i * 13) % 256, (i * 29) % 256)).save(path)
        files.append(path)
    return files


def serve(rtt_ms: float) -> None:
    """Child process: moto (+ dogclf's extensions) behind a WSGI layer that adds latency."""
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    from dogclf.local import moto_ext

    moto_ext.install()
    app = DomainDispatcherApplication(create_backend_app)
    delay = rtt_ms / 1000

    def delayed(environ, start_response):  # type: ignore[no-untyped-def]
        if delay:
            time.sleep(delay)  # sleeping threads overlap, as requests in flight do
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, delayed, threaded=True)
    print(f"http://127.0.0.1:{server.port}", flush=True)
    server.serve_forever()


@dataclass
class Figures:
    loop_s: float
    sync_s: float
    rerun_s: float
    uploaded: int
    rerun_uploaded: int

    @property
    def ratio(self) -> float:
        return self.loop_s / self.sync_s

    @property
    def rerun_share(self) -> float:
        return self.rerun_s / self.sync_s


def measure(root: Path, paths: list[Path], rtt_ms: float, workers: int) -> Figures:
    from dogclf.aws.s3_sync import PartSizes, local_files, plan_sync, run_sync
    from dogclf.aws.session import AwsContext
    from dogclf.local.emulator import Emulator, patched_environ

    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(rtt_ms)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        with patched_environ(Emulator(url, None).env()):
            ctx = AwsContext()
            s3 = ctx.client("s3")
            s3.create_bucket(Bucket="bench-loop")
            s3.create_bucket(Bucket="bench-sync")
            parts = PartSizes.from_mb(64)

            started = time.perf_counter()
            for path in paths:  # the baseline: what a simple script does
                key = "data/" + path.relative_to(root).as_posix()
                s3.upload_file(str(path), "bench-loop", key)
            loop_s = time.perf_counter() - started

            files = local_files(root, paths, "data/")
            started = time.perf_counter()
            plan = plan_sync(ctx, files, "bench-sync", "data/", parts=parts, workers=workers)
            first = run_sync(ctx, plan, parts=parts, workers=workers)
            sync_s = time.perf_counter() - started

            started = time.perf_counter()
            plan = plan_sync(ctx, files, "bench-sync", "data/", parts=parts, workers=workers)
            again = run_sync(ctx, plan, parts=parts, workers=workers)
            rerun_s = time.perf_counter() - started
    finally:
        child.kill()
        child.wait()
    return Figures(loop_s, sync_s, rerun_s, first.uploaded, again.uploaded)


def report(name: str, n: int, f: Figures, workers: int) -> None:
    print(f"[{name}]")
    print(f"  sequential upload_file : {f.loop_s:7.2f} s ({n / f.loop_s:5.0f} files/s)")
    print(
        f"  dogclf sync, {workers:2d} threads: {f.sync_s:7.2f} s ({n / f.sync_s:5.0f} files/s), "
        f"uploaded {f.uploaded}"
    )
    print(f"  unchanged re-run       : {f.rerun_s:7.2f} s, uploaded {f.rerun_uploaded}")
    print(f"  speed-up               : {f.ratio:5.2f}x")
    print(f"  re-run / first sync    : {f.rerun_share:6.1%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--rtt-ms", type=float, default=20.0)
    parser.add_argument("--serve", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = make_jpegs(root, args.files)
        size = sum(p.stat().st_size for p in paths)
        print(f"{args.files} JPEGs, {size / 1e6:.1f} MB, {os.cpu_count()} CPUs")
        loopback = measure(root, paths, 0.0, args.workers)
        report("loopback, no added latency (not judged)", args.files, loopback, args.workers)
        rtt = measure(root, paths, args.rtt_ms, args.workers)
        report(f"rtt {args.rtt_ms:g} ms per request", args.files, rtt, args.workers)

    ratio_ok = rtt.ratio >= TARGET_RATIO
    rerun_ok = rtt.rerun_share <= TARGET_RERUN
    print(
        f"speed-up at rtt {args.rtt_ms:g} ms: {rtt.ratio:.2f}x (target >= {TARGET_RATIO:.0f}x) "
        f"{'OK' if ratio_ok else 'BELOW TARGET'}"
    )
    print(
        f"unchanged re-run at rtt {args.rtt_ms:g} ms: {rtt.rerun_share:.1%} of the first sync "
        f"(target <= {TARGET_RERUN:.0%}) {'OK' if rerun_ok else 'OVER TARGET'}"
    )
    clean = loopback.rerun_uploaded == 0 and rtt.rerun_uploaded == 0
    return 0 if ratio_ok and rerun_ok and clean else 1


if __name__ == "__main__":
    sys.exit(main())
