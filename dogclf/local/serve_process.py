"""Model servers in child processes (the demo; tests and benchmarks too): a real
`dogclf serve` (the installed command, exactly what a user runs: the BYO image), or AWS's
PyTorch inference handler service (pytorch_inference.py: the PyTorch inference image).

Both print one line on stdout once the model is loaded, `Serving ... on URL`; the URL is
read from it.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dogclf.errors import DogclfError

READY_LINE = re.compile(r"^Serving .* on (?P<url>http://\S+)")


@dataclass
class ServeProcess:
    proc: subprocess.Popen[str]
    url: str
    log_path: Path | None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (the server drains its requests), then kill if it does not exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def _tail(path: Path | None, lines: int = 5) -> str:
    if path is None or not path.is_file():
        return ""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def start_serve(
    model: str,
    *,
    env: dict[str, str] | None = None,
    port: int = 0,
    extra_args: Sequence[str] = (),
    log_path: Path | None = None,
    ready_timeout: float = 300.0,
) -> ServeProcess:
    """Start `dogclf serve MODEL` and return once it serves (its URL known)."""
    command = [sys.executable, "-m", "dogclf", "serve", model, "--port", str(port), *extra_args]
    return start_server_process(
        command, f"dogclf serve {model}", env=env, log_path=log_path, ready_timeout=ready_timeout
    )


def start_pytorch_inference(
    model: Path,
    base_dir: Path,
    *,
    env: dict[str, str] | None = None,
    region: str = "us-east-1",
    account: str = "123456789012",
    log_path: Path | None = None,
    ready_timeout: float = 300.0,
) -> ServeProcess:
    """Serve MODEL (model.tar.gz or its folder) as the SageMaker PyTorch inference image
    would: unpacked into BASE_DIR/model (the image's /opt/ml/model), then AWS's handler
    service behind dogclf/local/pytorch_inference.py in a child process, on a free port.

    `env` is the container's environment (the SageMaker model's Environment on top of this
    process's). No code/requirements.txt is installed: the image pip-installs one at start
    (sagemaker_pytorch_serving_container/torchserve.py start_torchserve) and dogclf ships none.
    """
    from dogclf.model.artifact import check_model_dir, extract_model_tar

    model_dir = base_dir / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    base_dir.mkdir(parents=True, exist_ok=True)
    if model.is_dir():
        shutil.copytree(check_model_dir(model), model_dir)
    else:
        extract_model_tar(model, model_dir)
    child_env = dict(os.environ if env is None else env)
    # torchserve.py _set_python_path: code/ on PYTHONPATH, so the worker imports inference.
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(model_dir / "code"), child_env.get("PYTHONPATH")) if p
    )
    child_env["SAGEMAKER_BASE_DIR"] = str(base_dir)  # sagemaker_inference/environment.py
    script = Path(__file__).with_name("pytorch_inference.py")
    # -P: not the script's folder on sys.path, so only code/ and site-packages are there.
    command = [sys.executable, "-P", str(script), "--model-dir", str(model_dir)]
    command += ["--region", region, "--account", account]
    return start_server_process(
        command,
        f"the PyTorch inference handler service for {model}",
        env=child_env,
        log_path=log_path,
        ready_timeout=ready_timeout,
        cwd=base_dir,
    )


def start_server_process(
    command: Sequence[str],
    what: str,
    *,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    ready_timeout: float = 300.0,
    cwd: Path | None = None,
) -> ServeProcess:
    """Start a server that prints `Serving ... on URL` once ready; return then."""
    log = open(log_path, "w", encoding="utf-8") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
            bufsize=1,
            cwd=cwd,
        )
    finally:
        if log_path:
            log.close()  # type: ignore[union-attr]  # the child holds its own handle
    return ServeProcess(proc, _wait_ready(proc, what, log_path, ready_timeout), log_path)


def _wait_ready(
    proc: subprocess.Popen[str], what: str, log_path: Path | None, ready_timeout: float
) -> str:
    """The URL from the child's ready line; a DogclfError if it exits or stalls first."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True, name="server-stdout").start()
    hint = f"see {log_path}" if log_path else "run it by hand to see why"
    while True:
        try:
            line = lines.get(timeout=ready_timeout)
        except queue.Empty:
            proc.kill()
            raise DogclfError(f"{what} was not ready after {ready_timeout:.0f} s", hint) from None
        if line is None:
            code = proc.wait()
            detail = _tail(log_path)
            raise DogclfError(
                f"{what} exited with code {code} before serving"
                + (f":\n{detail}" if detail else ""),
                f"full log: {log_path}" if log_path else "run it by hand to see why",
            )
        match = READY_LINE.match(line.strip())
        if match:
            return match.group("url")
