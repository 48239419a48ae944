"""One Lambda execution environment: a function's zip unpacked into a task root and AWS's
runtime interface client, `python -m awslambdaric <handler>`, running there against a Runtime
API of its own (runtime_api.py).

Started as awslambdaric's README starts it in a container image (ENTRYPOINT python -m
awslambdaric, CMD the handler, the function's folder as working directory), so handler
resolution, the context object and the error JSON are awslambdaric's (bootstrap.py).
What Lambda itself does around the runtime is done here, in the words Lambda uses:

- init: the runtime gets INIT_LIMIT_S plus the function's timeout to load the handler
  (AWS: the init phase is limited to 10 s, then retried within the first invoke's timeout);
  an init error answers with the runtime's own /init/error body (Runtime.ImportModuleError,
  Runtime.HandlerNotFound, ...);
- a handler past its timeout is killed with its process group and answered
  "<time> <request id> Task timed out after N.NN seconds", the payload Lambda returns (seen in
  e.g. github.com/alexa-samples/skill-sample-nodejs-smarthome-switch/issues/18);
- a runtime that dies answers Runtime.ExitError, "RequestId: <id> Error: Runtime exited with
  error: exit status N" (or "... without providing a reason" for status 0);
- otherwise the environment stays warm for the next invoke, as Lambda reuses environments.

Its stdout and stderr go to one file; each invoke takes what was written since the last.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dogclf.local.moto_ext.runtime_api import Invocation, RuntimeApi, RuntimeEvent

INIT_LIMIT_S = 10.0


@dataclass(frozen=True)
class FunctionSetup:
    """What an environment is started from: the handler string, the zip, the timeout and the
    process environment (everything but the variables each environment sets for itself)."""

    handler: str
    code: bytes
    timeout_s: float
    env: dict[str, str]


@dataclass
class Outcome:
    payload: bytes
    errored: bool
    output: list[str]  # log lines the runtime printed while invoked
    duration_ms: float
    init_ms: float | None = None  # a cold start's: how long the init phase took
    init_output: list[str] = field(default_factory=list)  # and what it printed


@dataclass
class _Phase:
    """What waiting on the runtime gave: its event, or None when the deadline passed."""

    event: RuntimeEvent | None
    elapsed_s: float
    output: list[str] = field(default_factory=list)


def trace_id() -> str:
    """An X-Ray trace header, as Lambda passes one per invocation (Lambda-Runtime-Trace-Id)."""
    root = f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"
    return f"Root={root};Parent={secrets.token_hex(8)};Sampled=0"


def timed_out(request_id: str, elapsed_s: float) -> bytes:
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    message = f"{stamp} {request_id} Task timed out after {elapsed_s:.2f} seconds"
    return json.dumps({"errorMessage": message}).encode()


def exited(request_id: str, returncode: int) -> bytes:
    if returncode == 0:
        reason = "Runtime exited without providing a reason"
    elif returncode < 0:
        reason = f"Runtime exited with error: signal: {signal.Signals(-returncode).name}"
    else:
        reason = f"Runtime exited with error: exit status {returncode}"
    doc = {
        "errorMessage": f"RequestId: {request_id} Error: {reason}",
        "errorType": "Runtime.ExitError",
    }
    return json.dumps(doc).encode()


class ExecutionEnvironment:
    """One runtime process, started lazily by the first invoke; one invoke at a time."""

    def __init__(self, setup: FunctionSetup, log_stream: str) -> None:
        self.setup = setup
        self.log_stream = log_stream
        self.alive = True
        self._dir = tempfile.mkdtemp(prefix="dogclf-lambda-")
        self.task_root = os.path.join(self._dir, "task")
        zipfile.ZipFile(io.BytesIO(setup.code)).extractall(self.task_root)
        self._output_path = os.path.join(self._dir, "output.log")
        self._output_read = 0
        self._api = RuntimeApi()
        self._process: subprocess.Popen[bytes] | None = None

    def invoke(self, request_id: str, body: bytes, invoked_function_arn: str) -> Outcome:
        init_ms = None
        init_output: list[str] = []
        if self._process is None:
            init = self._init()
            init_ms, init_output = init.elapsed_s * 1000, init.output
            failed = self._init_failure(init, request_id)
            if failed is not None:
                failed.init_ms, failed.init_output = init_ms, init_output
                return failed
        deadline = time.time() + self.setup.timeout_s
        self._api.hand_over(
            Invocation(request_id, body, int(deadline * 1000), invoked_function_arn, trace_id())
        )
        run = self._wait(self.setup.timeout_s, ("response", "error", "exited"))
        payload, errored = self._answer(run, request_id)
        return Outcome(payload, errored, run.output, run.elapsed_s * 1000, init_ms, init_output)

    def _init(self) -> _Phase:
        env = {
            **self.setup.env,
            "AWS_LAMBDA_RUNTIME_API": self._api.address,
            "LAMBDA_TASK_ROOT": self.task_root,
            "AWS_LAMBDA_LOG_STREAM_NAME": self.log_stream,
        }
        with open(self._output_path, "ab") as output:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "awslambdaric", self.setup.handler],
                cwd=self.task_root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a timeout kills all of it
            )
        threading.Thread(target=self._watch, args=(self._process,), daemon=True).start()
        return self._wait(INIT_LIMIT_S + self.setup.timeout_s, ("next", "init_error", "exited"))

    def _init_failure(self, init: _Phase, request_id: str) -> Outcome | None:
        """None when the runtime asked for its first invocation; else the invoke's answer."""
        if init.event is not None and init.event.kind == "next":
            return None
        if init.event is not None and init.event.kind == "init_error":
            self.close()  # awslambdaric exits after reporting it (bootstrap.run)
            return Outcome(init.event.body, True, [], 0.0)
        payload, _ = self._answer(init, request_id)
        return Outcome(payload, True, [], 0.0)

    def _answer(self, phase: _Phase, request_id: str) -> tuple[bytes, bool]:
        """(payload, errored) for a phase that ended in an answer, an exit or the deadline."""
        event = phase.event
        if event is None:
            self.close()
            return timed_out(request_id, phase.elapsed_s), True
        if event.kind == "exited":
            self.close()
            return exited(request_id, int(event.body or b"0")), True
        return event.body, event.kind != "response"

    def _wait(self, limit_s: float, kinds: tuple[str, ...]) -> _Phase:
        started = time.monotonic()
        deadline = started + limit_s
        event = None
        while event is None or event.kind not in kinds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                event = None
                break
            try:
                event = self._api.events.get(timeout=remaining)
            except queue.Empty:
                event = None
                break
        return _Phase(event, time.monotonic() - started, self._new_output())

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        self._api.report(RuntimeEvent("exited", body=str(process.wait()).encode()))

    def _new_output(self) -> list[str]:
        """Lines written since the last call. awslambdaric's StandardLogSink joins an error's
        lines with \\r so that Lambda's log collector keeps them one log event: so do we."""
        with open(self._output_path, "rb") as output:
            output.seek(self._output_read)
            data = output.read()
        self._output_read += len(data)
        lines = data.decode("utf-8", "replace").split("\n")
        if lines[-1] == "":
            lines.pop()
        return [line.replace("\r", "\n").rstrip("\n") for line in lines]

    def close(self) -> None:
        """Kill the runtime (its whole process group) and forget the task root."""
        self.alive = False
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it died meanwhile
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._api.close()
        shutil.rmtree(self._dir, ignore_errors=True)
