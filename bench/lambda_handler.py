"""The Lambda handler's costs, each against a baseline measured in the same run.

1. Zip size of what `dogclf lambda-deploy` uploads (target <= 20 KB).
2. Cold import of the handler module, unpacked from that zip, in fresh interpreters, against
   `import boto3` alone (target <= +50 ms). The handler creates its sagemaker-runtime client
   at import (the init phase, which provisioned concurrency runs ahead of traffic); that
   client's creation is also timed alone so the split is visible.
3. Per-request overhead of the handler beyond the endpoint's own latency (target <= 5 ms
   median): the same JPEG sent (a) straight to the endpoint with boto3 invoke_endpoint and
   (b) through handler(event, context), alternating, against one local server.

The server is a tiny stdlib HTTP server in a subprocess that answers like the
sagemaker-runtime API (reads the body, returns a fixed top-5 JSON), not `dogclf serve`: a
model's forward pass would only add the same noise to both sides of the subtraction.

Run: python bench/lambda_handler.py [--runs N] [--requests N]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ZIP_TARGET_KB = 20.0
IMPORT_TARGET_MS = 50.0
OVERHEAD_TARGET_MS = 5.0

STUB_SERVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = json.dumps({"predictions": [
    {"label": f"breed_{i}", "index": i, "probability": round(0.5 / (i + 1), 6)} for i in range(5)
]}).encode()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs (40 ms)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """What a Lambda environment provides: region, credentials, no ~/.aws files."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "ENDPOINT_NAME": "dogclf-dev",
        **(extra or {}),
    }


def import_ms(statement: str, cwd: Path) -> float:
    """Milliseconds `statement` takes in a fresh interpreter (timed inside it)."""
    probe = (
        "import time; t = time.perf_counter(); "
        f"{statement}; print((time.perf_counter() - t) * 1000)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def bench_imports(code_dir: Path, runs: int) -> dict[str, float]:
    cases = {
        "import boto3": "import boto3",
        "import handler": "import lambda_handler.handler",
        "boto3 + client": "import boto3; boto3.client('sagemaker-runtime')",
    }
    for statement in cases.values():  # warm the page cache once
        import_ms(statement, code_dir)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):  # interleaved, so load changes hit every case alike
        for name, statement in cases.items():
            samples[name].append(import_ms(statement, code_dir))
    return {name: statistics.median(values) for name, values in samples.items()}


def photo_jpeg(width: int = 800, height: int = 600, seed: int = 0) -> bytes:
    """A JPEG about the size of a phone photo resized for upload (noise compresses poorly)."""
    from PIL import Image, ImageFilter

    rng = random.Random(seed)
    noise = Image.effect_noise((width, height), 60).convert("RGB")
    tint = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))  # type: ignore[arg-type]
    image = Image.blend(noise, tint, 0.5).filter(ImageFilter.GaussianBlur(1.2))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


class Context:
    aws_request_id = "bench-0000"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_overhead(code_dir: Path, requests: int) -> dict[str, Any]:
    stub = subprocess.Popen(
        [sys.executable, "-c", STUB_SERVER], stdout=subprocess.PIPE, text=True, env=child_env()
    )
    try:
        assert stub.stdout is not None
        url = f"http://127.0.0.1:{stub.stdout.readline().strip()}"
        os.environ.update(child_env({"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": url}))
        sys.path.insert(0, str(code_dir))
        from lambda_handler import handler as module  # the zip's code, as Lambda runs it

        image = photo_jpeg()
        event = {"image": base64.b64encode(image).decode()}
        url_event = {
            "version": "2.0",
            "rawPath": "/",
            "headers": {"content-type": "image/jpeg"},
            "requestContext": {"http": {"method": "POST"}},
            "body": event["image"],
            "isBase64Encoded": True,
        }

        def direct() -> None:  # the endpoint's own latency, as any boto3 caller sees it
            answer = module.RUNTIME.invoke_endpoint(
                EndpointName="dogclf-dev", Body=image, ContentType="image/jpeg"
            )
            json.loads(answer["Body"].read())

        def through(e: dict[str, Any]) -> None:
            with contextlib.redirect_stdout(io.StringIO()):  # the one log line per request
                response = module.handler(e, Context())
            assert response["statusCode"] == 200, response

        def timed(fn: Any, *args: Any) -> float:
            start = time.perf_counter()
            fn(*args)
            return (time.perf_counter() - start) * 1000

        for _ in range(20):  # connections, caches
            direct()
            through(event)
        samples: dict[str, list[float]] = {"direct": [], "direct event": [], "url event": []}
        for _ in range(requests):
            samples["direct"].append(timed(direct))
            samples["direct event"].append(timed(through, event))
            samples["url event"].append(timed(through, url_event))
        return {"image_bytes": len(image), "samples": samples}
    finally:
        stub.terminate()
        stub.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters per import case")
    parser.add_argument("--requests", type=int, default=300, help="requests per overhead case")
    args = parser.parse_args()
    from dogclf.aws.lambda_fn import build_zip

    ok = True
    data = build_zip()
    size_kb = len(data) / 1024
    deterministic = build_zip() == data
    ok &= size_kb <= ZIP_TARGET_KB and deterministic
    print(
        f"zip: {len(data):,} bytes = {size_kb:.1f} KB (target <= {ZIP_TARGET_KB:.0f} KB), "
        f"deterministic: {deterministic}"
    )

    with tempfile.TemporaryDirectory(prefix="dogclf-lambda-bench-") as tmp:
        code_dir = Path(tmp)
        zipfile.ZipFile(io.BytesIO(data)).extractall(code_dir)

        imports = bench_imports(code_dir, args.runs)
        extra = imports["import handler"] - imports["import boto3"]
        client = imports["boto3 + client"] - imports["import boto3"]
        ok &= extra <= IMPORT_TARGET_MS
        print(f"\ncold import, median of {args.runs} fresh interpreters each:")
        print(f"  import boto3                : {imports['import boto3']:7.1f} ms  (baseline)")
        print(f"  import lambda_handler.handler: {imports['import handler']:7.1f} ms")
        print(
            f"  difference                  : {extra:+7.1f} ms  (target <= +{IMPORT_TARGET_MS:.0f} ms) "
            f"{'OK' if extra <= IMPORT_TARGET_MS else 'OVER TARGET'}"
        )
        print(
            f"    of which boto3.client('sagemaker-runtime') alone: {client:+.1f} ms; "
            f"the handler's own modules: {extra - client:+.1f} ms"
        )

        result = bench_overhead(code_dir, args.requests)
        samples = result["samples"]
        base = statistics.median(samples["direct"])
        print(
            f"\nper request, {args.requests} each, alternating, "
            f"{result['image_bytes']:,}-byte JPEG, local stub runtime:"
        )
        for name, values in samples.items():
            med = statistics.median(values)
            line = f"  {name:<13}: median {med:6.2f} ms  p90 {percentile(values, 0.9):6.2f} ms"
            if name != "direct":
                over = med - base
                ok &= over <= OVERHEAD_TARGET_MS
                line += (
                    f"  overhead {over:+5.2f} ms (target <= {OVERHEAD_TARGET_MS:.0f}) "
                    f"{'OK' if over <= OVERHEAD_TARGET_MS else 'OVER TARGET'}"
                )
            else:
                line += "  (baseline: boto3 invoke_endpoint straight to the server)"
            print(line)
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (shared)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
