"""`dogclf serve` throughput against the model's forward pass and a reference-style server.

In one run, on generated 300-700 px JPEGs and resnet50 (random weights, 133 classes):
  forward-only  the classifier serve loads (same precision), its forward pass alone on
                preprocessed tensors, at the best of the batch sizes and of the two ways
                serve can run it (one pass on every core, or passes side by side)
  serve         a real `dogclf serve` process, N concurrent keep-alive clients posting JPEGs
  baseline      a server written like the reference project: per request PIL Resize((224,224))
                + ToTensor + Normalize, eager fp32 model, batch 1, called from every request
                thread
Rounds are interleaved, so load from elsewhere on the machine hits all three alike.
Targets (issue 4, 2-core CPU): serve >= 0.85 x forward-only and >= 1.6 x baseline.

Then, per precision of --overload-precisions (a fresh serve process each, default config):
  sustained     closed-loop images/s with --clients keep-alive clients
  overload      open-loop offered load at 2x and 4x that rate (--overload-s seconds each):
                goodput / sustained (target >= 0.9), p99 of the accepted requests against
                serving.request_deadline_s, share of 503s (all with Retry-After), other 5xx
                (must be 0)
  peak RSS      of the serve process (VmHWM; target <= 1.5 GB with the default workers)
  $ / 1M        predictions on one ml.m5.large (2 vCPUs, like the 2-core machine this is
                meant for) at the sustained rate, from dogclf/data/prices.json

Run: python bench/serve_throughput.py [--precision auto|fp32|bf16] [--requests 192]
     [--clients 16] [--arch resnet50] [--max-batch-size 16] [--workers N]
     [--overload-precisions auto,fp32] [--overload-s 30] [--skip-throughput]
"""

from __future__ import annotations

import argparse
import http.client
import io
import itertools
import json
import math
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from machine import load, torch_line

FORWARD_TARGET = 0.85
BASELINE_TARGET = 1.6
GOODPUT_TARGET = 0.9
RSS_TARGET_MB = 1536
OVERLOAD_FACTORS = (2, 4)
PRICE_INSTANCE = ("us-east-1", "ml.m5.large")


# ---------------------------------------------------------------- inputs


def make_inputs(root: Path, count: int) -> list[bytes]:
    from dogclf.training.synthetic import make_dataset

    per_class = max(3, -(-count // 4))
    make_dataset(root / "images", classes=4, per_class=per_class, size_range=(300, 700), seed=1)
    files = sorted((root / "images").rglob("*.jpg"))[:count]
    return [f.read_bytes() for f in files]


def make_model(root: Path, arch: str, classes: int = 133, image_size: int = 224) -> Path:
    import torch

    from dogclf.model.network import build_model

    torch.manual_seed(0)
    model_dir = root / "model"
    model_dir.mkdir()
    net = build_model(arch, classes, pretrained=False)
    torch.save(
        {
            "format_version": 1,
            "arch": arch,
            "num_classes": classes,
            "image_size": image_size,
            "state_dict": net.state_dict(),
        },
        model_dir / "model.pt",
    )
    (model_dir / "labels.json").write_text(json.dumps([f"breed_{i:03d}" for i in range(classes)]))
    return model_dir


# ---------------------------------------------------------------- forward-only


class ForwardOnly:
    """The classifier `dogclf serve` loads, its forward pass alone on normalised batches made
    beforehand. Timed as serve can run it: one pass at a time on every core, or (the plan
    serve picks on a CPU) a few passes side by side, each on its share of the cores."""

    def __init__(self, model_dir: Path, images: Sequence[bytes], precision: str) -> None:
        from dogclf.model.inference import load_classifier

        self.classifier = load_classifier(model_dir, precision=precision)
        self.pixels = [self.classifier.prepare(data) for data in images]
        self._batches: dict[int, list[Any]] = {}

    def batches(self, size: int) -> list[Any]:
        if size not in self._batches:
            self._batches[size] = [
                self.classifier.to_batch(self.pixels[i : i + size])
                for i in range(0, len(self.pixels), size)
            ]
        return self._batches[size]

    def rate(self, batch_size: int, workers: int, threads: int) -> float:
        """Images/s over all the images: `workers` threads share the batches."""
        import torch

        torch.set_num_threads(threads)
        batches = self.batches(batch_size)
        shares = [batches[i::workers] for i in range(workers)]
        for share in shares:
            self.classifier.forward(share[0])  # warm for this shape and thread count

        def work(share: list[Any]) -> None:
            for batch in share:
                self.classifier.forward(batch)

        runners = [threading.Thread(target=work, args=(share,)) for share in shares]
        started = time.perf_counter()
        for runner in runners:
            runner.start()
        for runner in runners:
            runner.join()
        return len(self.pixels) / (time.perf_counter() - started)


# ---------------------------------------------------------------- load generator


def run_load(
    port: int, images: Sequence[bytes], requests: int, clients: int, warmup: int
) -> dict[str, Any]:
    """`clients` threads with keep-alive connections POST JPEGs to /invocations."""
    work: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    for i in range(warmup + requests):
        work.put(i)
    for _ in range(clients):
        work.put(None)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    timed_start = threading.Event()
    start_time = [0.0]

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while (i := work.get()) is not None:
            body = images[i % len(images)]
            t0 = time.perf_counter()
            conn.request("POST", "/invocations", body=body, headers={"Content-Type": "image/jpeg"})
            resp = conn.getresponse()
            payload = resp.read()
            elapsed = time.perf_counter() - t0
            if resp.status != 200:
                with lock:
                    failures.append(f"{resp.status}: {payload[:200]!r}")
            if i >= warmup:
                with lock:
                    if not timed_start.is_set():
                        timed_start.set()
                        start_time[0] = t0
                    latencies.append(elapsed)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start_time[0]
    return {
        "images_per_s": len(latencies) / wall,
        "latencies_ms": [1000 * x for x in latencies],
        "failures": failures,
    }


# ---------------------------------------------------------------- servers


def start_process(cmd: list[str], ready_marker: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if ready_marker in line:
            port = int(line.rsplit(":", 1)[1].split()[0].strip("/"))
            return proc, port
    raise RuntimeError(f"{cmd[0]} exited before it was ready (code {proc.wait()})")


def stop_process(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def serve_dogclf(
    model_dir: Path, args: argparse.Namespace, precision: str | None = None
) -> tuple[subprocess.Popen[str], int]:
    cmd = [
        sys.executable,
        "-m",
        "dogclf",
        "serve",
        str(model_dir),
        "--port",
        "0",
        "--max-batch-size",
        str(args.max_batch_size),
        "--max-batch-wait-ms",
        str(args.max_batch_wait_ms),
    ]
    if args.decode_threads:
        cmd += ["--decode-threads", str(args.decode_threads)]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    if args.torch_threads:
        cmd += ["--torch-threads", str(args.torch_threads)]
    cmd += ["--precision", precision or args.precision]
    return start_process(cmd, "Serving ")


def baseline_server(model_dir: Path, port: int) -> None:
    """The reference project's serving path: fixed-size resize, batch 1, no batching."""
    import torch
    from PIL import Image
    from torchvision import transforms

    from dogclf.model.network import build_model

    checkpoint = torch.load(model_dir / "model.pt", weights_only=True)
    labels = json.loads((model_dir / "labels.json").read_text())
    model = build_model(checkpoint["arch"], checkpoint["num_classes"])
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    transform = transforms.Compose(
        [
            transforms.Resize((224, 224)),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            image = Image.open(io.BytesIO(body)).convert("RGB")
            with torch.no_grad():
                output = model(transform(image).unsqueeze(0))
            probs = torch.softmax(output, dim=1)[0]
            values, indices = probs.topk(5)
            answer = json.dumps(
                {
                    "predictions": [
                        {"label": labels[i], "index": i, "probability": p}
                        for p, i in zip(values.tolist(), indices.tolist(), strict=True)
                    ]
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    ThreadingHTTPServer.request_queue_size = 1024
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    httpd.daemon_threads = True
    with torch.no_grad():  # warm-up, as dogclf serve does
        model(torch.zeros(1, 3, 224, 224))
    print(f"Baseline on http://127.0.0.1:{httpd.server_address[1]}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=httpd.shutdown).start())
    httpd.serve_forever()


# ---------------------------------------------------------------- overload


def open_loop(port: int, images: Sequence[bytes], rate: float, seconds: float) -> dict[str, Any]:
    """Requests at a fixed offered `rate` for `seconds`, whatever the answers take (open
    loop: a client that does not slow down when the server does, as a busy endpoint's
    callers do). Each sender thread keeps its own keep-alive connection."""
    total = max(1, int(rate * seconds))
    # Enough senders that the offered rate holds while accepted requests wait up to the
    # deadline (10 s by default) and the rest are refused at once.
    senders = min(512, max(8, math.ceil(rate * 12)))
    counter = itertools.count()
    lock = threading.Lock()
    rows: list[tuple[int, float, bool]] = []  # status, latency s, Retry-After present
    start = time.perf_counter() + 0.5

    def sender() -> None:
        conn: http.client.HTTPConnection | None = None
        while (i := next(counter)) < total:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            t0 = time.perf_counter()
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                conn.request(
                    "POST", "/invocations", images[i % len(images)], {"Content-Type": "image/jpeg"}
                )
                resp = conn.getresponse()
                resp.read()
                status, retry = resp.status, resp.getheader("Retry-After") is not None
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                status, retry = -1, False  # a connection error: counted beside the 5xx
                if conn is not None:
                    conn.close()
                conn = None
            with lock:
                rows.append((status, time.perf_counter() - t0, retry))
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    accepted = sorted(latency for status, latency, _ in rows if status == 200)
    refused = [retry for status, _, retry in rows if status == 503]
    return {
        "offered_per_s": total / seconds,
        "goodput_per_s": len(accepted) / wall,
        "p99_accepted_s": accepted[min(len(accepted) - 1, int(0.99 * len(accepted)))]
        if accepted
        else float("nan"),
        "share_503": len(refused) / len(rows),
        "503_without_retry_after": refused.count(False),
        "other_5xx": sum(1 for status, _, _ in rows if status >= 500 and status != 503),
        "connection_errors": sum(1 for status, _, _ in rows if status == -1),
        "other_4xx": sum(1 for status, _, _ in rows if 400 <= status < 500),
    }


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM) in MB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def dollars_per_million(images_per_s: float) -> tuple[float | None, str]:
    """$ per 1M predictions on one instance at `images_per_s`, and the price's provenance."""
    from dogclf.aws.pricing import load_prices

    region, instance = PRICE_INSTANCE
    table = load_prices()
    hourly = table.sagemaker_hourly(region, "hosting", instance)
    if hourly is None or images_per_s <= 0:
        return None, f"{instance} in {region}: no price"
    return hourly / (images_per_s * 3600) * 1e6, f"{instance} {region} ${hourly}/h ({table.as_of})"


def overload_run(
    model_dir: Path, images: Sequence[bytes], args: argparse.Namespace, precision: str
) -> dict[str, Any]:
    """One precision: sustained rate, then 2x and 4x of it offered, then peak RSS."""
    proc, port = serve_dogclf(model_dir, args, precision)
    try:
        sustained = run_load(port, images, args.requests, args.clients, args.clients)
        rate = sustained["images_per_s"]
        print(f"  [{precision}] sustained {rate:.2f}/s, load average {load()}", flush=True)
        loads = {}
        for factor in OVERLOAD_FACTORS:
            loads[factor] = open_loop(port, images, factor * rate, args.overload_s)
            row = loads[factor]
            print(
                f"  [{precision}] {factor}x offered {row['offered_per_s']:.1f}/s: goodput "
                f"{row['goodput_per_s']:.2f}/s, 503s {row['share_503']:.0%}, load {load()}",
                flush=True,
            )
        # Measured again after the overload: the machine's other load drifts, and the
        # goodput compares with the mean of the two closed-loop rates.
        after = run_load(port, images, args.requests, args.clients, args.clients)
        rate = (rate + after["images_per_s"]) / 2
        print(f"  [{precision}] sustained after {after['images_per_s']:.2f}/s", flush=True)
        stats = get_stats(port)
        rss = peak_rss_mb(proc.pid)
    finally:
        stop_process(proc)
    return {
        "precision": stats["model"]["precision"],
        "workers": stats["model"]["workers"],
        "deadline_s": stats["admission"]["deadline_s"],
        "sustained": rate,
        "loads": loads,
        "rss_mb": rss,
        "batching": stats["batching"],
        "failures": sustained["failures"] + after["failures"],
    }


def print_overload(result: dict[str, Any]) -> bool:
    """The figures of one overload_run; True when every target is met."""
    rate, deadline = result["sustained"], result["deadline_s"]
    cost, priced = dollars_per_million(rate)
    print(
        f"\noverload, {result['precision']} ({result['workers']} workers): sustained "
        f"{rate:.2f} img/s (mean of before and after), deadline {deadline:g} s"
    )
    print(
        f"{'offered':<10}{'goodput/s':>10}{'x sust.':>9}{'p99 acc s':>11}{'503 share':>11}"
        f"{'no R-A':>8}{'other 5xx':>11}{'conn err':>10}"
    )
    ok = True
    for factor, row in result["loads"].items():
        ratio = row["goodput_per_s"] / rate
        ok &= ratio >= GOODPUT_TARGET and row["p99_accepted_s"] <= deadline
        ok &= row["other_5xx"] == 0 and row["503_without_retry_after"] == 0
        print(
            f"{f'{factor}x':<10}{row['goodput_per_s']:>10.2f}{ratio:>9.2f}"
            f"{row['p99_accepted_s']:>11.2f}{row['share_503']:>11.1%}"
            f"{row['503_without_retry_after']:>8}{row['other_5xx']:>11}{row['connection_errors']:>10}"
        )
    batching = result["batching"]
    print(
        f"refused at admission {batching['refused_deadline'] + batching['refused_queue_full']}, "
        f"expired in the queue {batching['expired_in_queue']}, mean batch "
        f"{batching['mean_batch']}"
    )
    ok_rss = result["rss_mb"] <= RSS_TARGET_MB
    print(
        f"goodput target >= {GOODPUT_TARGET}x sustained, p99 accepted <= {deadline:g} s, "
        f"0 other 5xx: {'OK' if ok else 'BELOW TARGET'}"
    )
    print(
        f"peak RSS of serve    : {result['rss_mb']:.0f} MB (target <= {RSS_TARGET_MB} MB) "
        f"{'OK' if ok_rss else 'ABOVE TARGET'}"
    )
    print(
        "$ per 1M predictions : "
        + (f"${cost:.2f}" if cost is not None else "unknown")
        + f" on one {priced}, at {rate:.2f} img/s"
    )
    return ok and ok_rss


# ---------------------------------------------------------------- main


def get_stats(port: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/stats")
    stats: dict[str, Any] = json.loads(conn.getresponse().read())
    conn.close()
    return stats


def summarize(name: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = sorted(ms for r in results for ms in r["latencies_ms"])
    return {
        "name": name,
        "images_per_s": statistics.median(r["images_per_s"] for r in results),
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "failures": [f for r in results for f in r["failures"]],
    }


def throughput(model_dir: Path, images: Sequence[bytes], args: argparse.Namespace) -> int:
    """forward-only vs serve vs baseline, interleaved rounds; 0 when the targets are met."""
    # Which batch size and plan suit the bare forward pass best (a short scan, then kept).
    from dogclf.serving.server import worker_plan

    forward_only = ForwardOnly(model_dir, images, args.precision)
    cpus = os.cpu_count() or 1
    device = forward_only.classifier.device
    plans = sorted({(1, cpus), worker_plan(device, cpus, args.workers, args.torch_threads)})
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    rates = {
        (bs, plan): max(forward_only.rate(bs, *plan) for _ in range(2))
        for bs in sizes
        for plan in plans
    }
    best_bs, best_plan = max(rates, key=lambda key: rates[key])
    print(
        f"  forward-only scan ({forward_only.classifier.precision}): "
        + ", ".join(f"batch {b} {w}x{t}: {r:.2f}/s" for (b, (w, t)), r in rates.items()),
        flush=True,
    )

    def forward_run() -> float:
        return forward_only.rate(best_bs, *best_plan)

    serve_proc, serve_port = serve_dogclf(model_dir, args)
    base_proc, base_port = start_process(
        [sys.executable, __file__, "--baseline-server", str(model_dir), "0"], "Baseline on"
    )
    forward: list[float] = []
    serve: list[dict[str, Any]] = []
    base: list[dict[str, Any]] = []
    try:
        # Interleaved rounds: the machine's other load hits all three alike.
        for r in range(args.rounds):
            forward.append(statistics.median(forward_run() for _ in range(2)))
            serve.append(run_load(serve_port, images, args.requests, args.clients, args.clients))
            base.append(run_load(base_port, images, args.requests, args.clients, args.clients))
            print(
                f"  round {r + 1}: forward-only {forward[-1]:.2f}/s, serve "
                f"{serve[-1]['images_per_s']:.2f}/s, baseline {base[-1]['images_per_s']:.2f}/s, "
                f"load average {load()}",
                flush=True,
            )
        stats = get_stats(serve_port)
    finally:
        stop_process(serve_proc)
        stop_process(base_proc)

    plan = f"batch {best_bs}, {best_plan[0]}x{best_plan[1]} threads"
    return print_throughput(forward, serve, base, plan, stats, args)


def print_throughput(
    forward: list[float],
    serve: list[dict[str, Any]],
    base: list[dict[str, Any]],
    plan: str,
    stats: dict[str, Any],
    args: argparse.Namespace,
) -> int:
    """The throughput table and ratios; 0 when the targets are met."""
    batching, served_model = stats["batching"], stats["model"]
    s, b = summarize("dogclf serve", serve), summarize("baseline (reference-style)", base)
    vs_forward = statistics.median(
        x["images_per_s"] / f for x, f in zip(serve, forward, strict=True)
    )
    vs_base = statistics.median(
        x["images_per_s"] / y["images_per_s"] for x, y in zip(serve, base, strict=True)
    )
    print()
    print(f"{'path (median of rounds)':<30}{'images/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{f'forward-only ({plan})':<30}{statistics.median(forward):>10.2f}")
    for row in (s, b):
        print(
            f"{row['name']:<30}{row['images_per_s']:>10.2f}{row['p50_ms']:>10.0f}{row['p99_ms']:>10.0f}"
        )
    print(
        f"serve: {served_model['precision']}, {served_model['workers']} worker(s) x "
        f"{served_model['torch_threads']} thread(s); batches mean {batching['mean_batch']}, "
        f"largest {batching['largest_batch']} (max {args.max_batch_size}, "
        f"wait {args.max_batch_wait_ms:g} ms)"
    )
    ok_f, ok_b = vs_forward >= FORWARD_TARGET, vs_base >= BASELINE_TARGET
    print(
        f"serve / forward-only : {vs_forward:.2f}x (target >= {FORWARD_TARGET}) {'OK' if ok_f else 'BELOW TARGET'}"
    )
    print(
        f"serve / baseline     : {vs_base:.2f}x (target >= {BASELINE_TARGET}) {'OK' if ok_b else 'BELOW TARGET'}"
    )
    print(
        f"load average at end  : {load()} (this bench's own threads included; "
        "the figure at start tells whether other work ran beside it)"
    )
    failures = s["failures"] + b["failures"]
    if failures:
        print(f"{len(failures)} failed requests, e.g. {failures[0]}")
        return 1
    return 0 if ok_f and ok_b else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--images", type=int, default=64, help="distinct generated JPEGs")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved measurement rounds")
    parser.add_argument("--requests", type=int, default=192, help="timed requests per round")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch-sizes", default="4,8,16", help="forward-only batch sizes")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--max-batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--decode-threads", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None, help="serve --workers")
    parser.add_argument("--torch-threads", type=int, default=None, help="serve --torch-threads")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument(
        "--overload-precisions",
        default="auto",
        help="comma list: one overload run (sustained, 2x, 4x, RSS, $) per precision",
    )
    parser.add_argument("--overload-s", type=float, default=30.0, help="seconds per overload")
    parser.add_argument("--skip-throughput", action="store_true", help="overload runs only")
    parser.add_argument(
        "--baseline-server", nargs=2, metavar=("MODEL_DIR", "PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.baseline_server:
        baseline_server(Path(args.baseline_server[0]), int(args.baseline_server[1]))
        return 0

    print(
        f"{args.arch}, {args.images} JPEGs of 300-700 px, {args.clients} clients, "
        f"{args.rounds} rounds x {args.requests} requests; {torch_line()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="dogclf-bench-") as tmp:
        root = Path(tmp)
        images = make_inputs(root, args.images)
        model_dir = make_model(root, args.arch)
        code = 0 if args.skip_throughput else throughput(model_dir, images, args)
        for precision in args.overload_precisions.split(","):
            result = overload_run(model_dir, images, args, precision.strip())
            if not print_overload(result) or result["failures"]:
                code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
