"""A real `dogclf serve` process started from Python (the demo; tests and benchmarks too).

It is the installed command in a child process, so what answers is exactly what a user runs;
the URL comes from the one line `serve` prints on stdout once the model is loaded.
"""

from __future__ import annotations

import queue
import re
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
    log = open(log_path, "w", encoding="utf-8") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, text=True, env=env, bufsize=1
        )
    finally:
        if log_path:
            log.close()  # type: ignore[union-attr]  # the child holds its own handle
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True, name="dogclf-serve-stdout").start()
    while True:
        try:
            line = lines.get(timeout=ready_timeout)
        except queue.Empty:
            proc.kill()
            raise DogclfError(
                f"dogclf serve {model} was not ready after {ready_timeout:.0f} s",
                f"see {log_path}" if log_path else "run it by hand to see why",
            ) from None
        if line is None:
            code = proc.wait()
            detail = _tail(log_path)
            raise DogclfError(
                f"dogclf serve {model} exited with code {code} before serving"
                + (f":\n{detail}" if detail else ""),
                f"full log: {log_path}" if log_path else "run it by hand to see why",
            )
        match = READY_LINE.match(line.strip())
        if match:
            return ServeProcess(proc, match.group("url"), log_path)
