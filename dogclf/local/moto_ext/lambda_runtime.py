"""Lambda Invoke that runs a deployed Python zip, without Docker, on moto 5.2.5.

moto 5.2.5's "simple" Lambda backend (the one used without Docker) only echoes the event
back, even for a function that does not exist. This module overrides its invoke:

- an unknown function or qualifier gets ResourceNotFound, as on AWS;
- once the runtime is on for an account/region (a route this module adds:
  POST /moto-api/dogclf/lambda/runtime {"env": {...}}, or enable_lambda_runtime()), a
  Python zip function really runs: its zip is unpacked into a temp dir and its handler
  called by lambda_runner.py in a fresh interpreter (a cold start per invoke) with the
  function's environment, dummy credentials, AWS_ENDPOINT_URL pointing back at this moto
  server and the given "env" (e.g. AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME for `dogclf serve`).
  Its stdout/stderr go to the function's log group; an exception or a timeout comes back
  as FunctionError "Unhandled", as on AWS;
- otherwise (runtime off, not Python, no zip) moto's echo answers as before.

The setting lives on the backend, so /moto-api/reset forgets it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from dogclf.local.moto_ext import routes

LAMBDA_RUNTIME_PATH = "/moto-api/dogclf/lambda/runtime"
RUNNER = Path(__file__).with_name("lambda_runner.py")


def enable_lambda_runtime(
    emulator_url: str, env: dict[str, str] | None = None, *, region: str = "us-east-1"
) -> None:
    """Client side of the runtime route (tests, demo): one POST over HTTP."""
    routes.post_json(emulator_url, LAMBDA_RUNTIME_PATH, {"env": env or {}, "region": region})


def _enable(body: dict[str, Any], moto_url: str) -> routes.Response:
    from moto.awslambda.utils import get_backend

    backend = get_backend(*routes.account_and_region(body))
    backend.__dict__["_dogclf_runtime"] = {
        "moto_url": moto_url,
        "env": {str(k): str(v) for k, v in (body.get("env") or {}).items()},
    }
    return routes.reply(200, {"status": "ok"})


def _invocation_env(
    fn: Any, runtime: dict[str, Any], *, request_id: str, stream: str, result_file: str
) -> dict[str, str]:
    """What AWS's runtime puts in a function's environment, plus the runner's own keys."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        **fn.environment_vars,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": fn.region,
        "AWS_DEFAULT_REGION": fn.region,
        "AWS_ENDPOINT_URL": runtime["moto_url"],
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": str(fn.version),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
        "AWS_LAMBDA_LOG_GROUP_NAME": fn.logs_group_name,
        "AWS_LAMBDA_LOG_STREAM_NAME": stream,
        "_HANDLER": str(fn.handler),
        "_DOGCLF_REQUEST_ID": request_id,
        "_DOGCLF_INVOKED_ARN": fn.function_arn,
        "_DOGCLF_TIMEOUT": str(fn.timeout),
        "_DOGCLF_RESULT": result_file,
        **runtime["env"],
    }


def _run_runner(
    fn: Any, event: Any, env: dict[str, str], code_dir: str
) -> tuple[str, dict[str, Any]]:
    """(the runner's stdout+stderr, its outcome); a timeout or a crash as AWS words them."""
    import subprocess

    payload = event if isinstance(event, bytes | str) else json.dumps(event)
    output = ""
    try:
        done = subprocess.run(
            [sys.executable, str(RUNNER)],
            input=payload if isinstance(payload, bytes) else payload.encode(),
            env=env,
            cwd=code_dir,
            capture_output=True,
            timeout=float(fn.timeout),
        )
        output = (done.stdout + done.stderr).decode("utf-8", "replace")
        with open(env["_DOGCLF_RESULT"]) as handle:
            outcome: dict[str, Any] = json.load(handle)
    except subprocess.TimeoutExpired:
        outcome = {"error": {"errorMessage": f"Task timed out after {fn.timeout}.00 seconds"}}
    except (OSError, ValueError):  # the interpreter died before writing its result
        outcome = {"error": {"errorMessage": "Runtime exited without providing a reason"}}
    return output, outcome


def _write_log(fn: Any, stream: str, lines: list[str]) -> None:
    import time

    logs = fn.logs_backend
    logs.ensure_log_group(fn.logs_group_name)
    logs.create_log_stream(fn.logs_group_name, stream)
    stamp = int(time.time() * 1000)
    logs.put_log_events(
        fn.logs_group_name, stream, [{"timestamp": stamp, "message": line} for line in lines]
    )


def run_zip_function(fn: Any, event: Any, runtime: dict[str, Any]) -> tuple[bytes, bool]:
    """Run one invocation in a fresh interpreter; (payload, errored)."""
    import io
    import tempfile
    import uuid
    import zipfile

    from moto.core.utils import utcnow

    request_id = str(uuid.uuid4())
    stream = f"{utcnow():%Y/%m/%d}/[{fn.version}]{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory(prefix="dogclf-lambda-") as tmp:
        code = os.path.join(tmp, "task")
        zipfile.ZipFile(io.BytesIO(fn.code_bytes)).extractall(code)
        env = _invocation_env(
            fn,
            runtime,
            request_id=request_id,
            stream=stream,
            result_file=os.path.join(tmp, "result.json"),
        )
        output, outcome = _run_runner(fn, event, env, code)
    lines = [f"START RequestId: {request_id}", *output.splitlines(), f"END RequestId: {request_id}"]
    _write_log(fn, stream, lines)
    if "error" in outcome:
        return json.dumps(outcome["error"]).encode(), True
    return json.dumps(outcome["result"]).encode(), False


def install() -> None:
    from moto.awslambda_simple.models import LambdaSimpleBackend

    routes.add_post_route(LAMBDA_RUNTIME_PATH, 'POST {"env": {...}}', _enable)
    echo = LambdaSimpleBackend.invoke

    def invoke(
        self: Any,
        function_name: str,
        qualifier: Any,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> Any:
        fn = self.get_function(function_name, qualifier)  # moto's echo skips this 404
        runtime = self.__dict__.get("_dogclf_runtime")
        if not runtime or not str(fn.run_time or "").startswith("python") or not fn.code_bytes:
            return echo(self, function_name, qualifier, body, headers, response_headers)
        payload, errored = run_zip_function(fn, body, runtime)
        if errored:
            response_headers["x-amz-function-error"] = "Unhandled"
        return payload

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
