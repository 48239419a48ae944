"""Lambda Invoke that runs a deployed Python zip under AWS's own runtime, without Docker.

moto 5.2.5's "simple" Lambda backend (the one used without Docker) only echoes the event
back, even for a function that does not exist. This module overrides its invoke:

- an unknown function or qualifier gets ResourceNotFound, as on AWS;
- the Qualifier is honoured: moto's LambdaResponse.invoke reads a lowercase "qualifier"
  that boto3 never sends, so an alias's invoke ran $LATEST;
- once the runtime is on for an account/region (a route this module adds:
  POST /moto-api/dogclf/lambda/runtime {"env": {...}}, or enable_lambda_runtime()), a
  Python zip function really runs in a Lambda execution environment
  (execution_environment.py): its zip unpacked into a task root and AWS's runtime interface
  client, awslambdaric, running its handler against a Runtime API served on loopback
  (runtime_api.py), kept warm between invokes (environment_pool.py). Its environment is the
  function's variables plus those Lambda defines for every function (`_lambda_env`), dummy
  credentials, AWS_ENDPOINT_URL pointing back at this moto server and the given "env" (e.g.
  AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME for `dogclf serve`). What it prints goes to the
  function's log group, one stream per environment between START/END/REPORT lines, as on
  Lambda; an error comes back as FunctionError "Unhandled" with Lambda's error JSON;
- otherwise (runtime off, not Python, no zip) moto's echo answers as before.

The setting lives on the backend, so /moto-api/reset forgets it; the reset also tears down
every warm environment, and so do the emulator's stop and the interpreter's exit.
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import Any

from dogclf.local.moto_ext import routes
from dogclf.local.moto_ext.environment_pool import POOL, Key
from dogclf.local.moto_ext.execution_environment import (
    ExecutionEnvironment,
    FunctionSetup,
    Outcome,
)

LAMBDA_RUNTIME_PATH = "/moto-api/dogclf/lambda/runtime"
LOG_TAIL_BYTES = 4096  # Invoke's LogType=Tail: "the last 4 KB of the execution log"


def enable_lambda_runtime(
    emulator_url: str, env: dict[str, str] | None = None, *, region: str = "us-east-1"
) -> None:
    """Client side of the runtime route (tests, demo): one POST over HTTP."""
    routes.post_json(emulator_url, LAMBDA_RUNTIME_PATH, {"env": env or {}, "region": region})


def _enable(body: dict[str, Any], moto_url: str) -> routes.Response:
    from importlib.util import find_spec

    from moto.awslambda.utils import get_backend

    if find_spec("awslambdaric") is None:
        return routes.reply(
            400, {"Error": "awslambdaric is missing: pip install 'dogclf[emulator]'"}
        )
    backend = get_backend(*routes.account_and_region(body))
    backend.__dict__["_dogclf_runtime"] = {
        "moto_url": moto_url,
        "env": {str(k): str(v) for k, v in (body.get("env") or {}).items()},
    }
    return routes.reply(200, {"status": "ok"})


def _lambda_env(fn: Any, runtime: dict[str, Any]) -> dict[str, str]:
    """The function's process environment: its own variables, then the ones Lambda defines
    for every function (AWS's "Defined runtime environment variables"; awslambdaric reads
    the AWS_LAMBDA_* ones in lambda_context.py and AWS_EXECUTION_ENV in lambda_config.py),
    then the emulator's. The runtime API address and the log stream are per environment."""
    from importlib.util import find_spec

    spec = find_spec("awslambdaric")
    runtime_dir = os.path.dirname(os.path.dirname(spec.origin)) if spec and spec.origin else ""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        **fn.environment_vars,
        "_HANDLER": str(fn.handler),
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{fn.run_time}",
        "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": str(fn.version),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": fn.logs_group_name,
        "LAMBDA_RUNTIME_DIR": runtime_dir,  # where the runtime's own libraries live
        "AWS_REGION": fn.region,
        "AWS_DEFAULT_REGION": fn.region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_ENDPOINT_URL": runtime["moto_url"],
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        **runtime["env"],
    }


def _invoked_arn(fn: Any, qualifier: str | None) -> str:
    """The ARN the caller invoked (an alias's included), as Lambda hands it to the runtime."""
    from moto.awslambda.utils import make_function_arn

    arn: str = make_function_arn(fn.region, fn.account_id, fn.function_name)
    return f"{arn}:{qualifier}" if qualifier else arn


def _event_bytes(body: Any) -> bytes:
    data = body.encode() if isinstance(body, str) else bytes(body or b"")
    return data if data.strip() else b"{}"


def _start_environment(fn: Any, setup: FunctionSetup) -> ExecutionEnvironment:
    import uuid

    from moto.core.utils import utcnow

    stream = f"{utcnow():%Y/%m/%d}/[{fn.version}]{uuid.uuid4().hex}"
    return ExecutionEnvironment(setup, stream)


def _log_lines(fn: Any, request_id: str, outcome: Outcome) -> list[str]:
    """The runtime's output framed as Lambda frames it in the log stream."""
    report = (
        f"REPORT RequestId: {request_id}\tDuration: {outcome.duration_ms:.2f} ms"
        f"\tBilled Duration: {math.ceil(outcome.duration_ms)} ms\tMemory Size: {fn.memory_size} MB"
    )
    if outcome.init_ms is not None:
        report += f"\tInit Duration: {outcome.init_ms:.2f} ms"
    return [
        *outcome.init_output,
        f"START RequestId: {request_id} Version: {fn.version}",
        *outcome.output,
        f"END RequestId: {request_id}",
        report,
    ]


def _write_log(fn: Any, stream: str, lines: list[str]) -> None:
    import time

    logs = fn.logs_backend
    logs.ensure_log_group(fn.logs_group_name)
    logs.ensure_log_stream(fn.logs_group_name, stream)
    stamp = int(time.time() * 1000)
    logs.put_log_events(
        fn.logs_group_name, stream, [{"timestamp": stamp, "message": line} for line in lines]
    )


def run_zip_function(
    fn: Any, qualifier: str | None, body: Any, runtime: dict[str, Any]
) -> tuple[Outcome, list[str]]:
    """One invocation in a warm (or new) execution environment; (outcome, its log lines)."""
    import uuid

    env = _lambda_env(fn, runtime)
    setup = FunctionSetup(str(fn.handler), fn.code_bytes, float(fn.timeout), env)
    digest = hashlib.sha256(fn.code_bytes).hexdigest()
    key: Key = (
        fn.function_arn,
        (setup.handler, digest, setup.timeout_s, tuple(sorted(env.items()))),
    )
    environment = POOL.acquire(key, lambda: _start_environment(fn, setup))
    request_id = str(uuid.uuid4())
    try:
        outcome = environment.invoke(request_id, _event_bytes(body), _invoked_arn(fn, qualifier))
    finally:
        POOL.release(key, environment)
    lines = _log_lines(fn, request_id, outcome)
    _write_log(fn, environment.log_stream, lines)
    return outcome, lines


def _answer(fn: Any, outcome: Outcome, lines: list[str], response_headers: Any) -> bytes:
    """Invoke's answer: the payload, FunctionError on an error, the log tail for LogType=Tail
    (moto drops x-amz-log-result unless asked for) and the version that ran."""
    import base64

    if outcome.errored:
        response_headers["x-amz-function-error"] = "Unhandled"
    tail = ("\n".join(lines) + "\n").encode()[-LOG_TAIL_BYTES:]
    response_headers["x-amz-log-result"] = base64.b64encode(tail).decode()
    response_headers["x-amz-executed-version"] = str(fn.version)
    return outcome.payload


def install() -> None:
    import atexit

    from moto.awslambda.responses import LambdaResponse
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.moto_api._internal.models import MotoAPIBackend
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

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
        outcome, lines = run_zip_function(fn, qualifier, body, runtime)
        return _answer(fn, outcome, lines, response_headers)

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    respond = LambdaResponse.invoke

    def invoke_qualified(self: Any) -> Any:
        if "Qualifier" in self.querystring:
            self.querystring.setdefault("qualifier", self.querystring["Qualifier"])
        return respond(self)

    LambdaResponse.invoke = invoke_qualified  # type: ignore[method-assign]
    _tear_down_before(MotoAPIBackend, "reset")
    _tear_down_before(ThreadedMotoServer, "stop")
    atexit.register(POOL.close_all)


def _tear_down_before(cls: type, method: str) -> None:
    """Make `cls.method` close every warm environment first: none outlives moto's state."""
    original = getattr(cls, method)

    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        POOL.close_all()
        return original(self, *args, **kwargs)

    setattr(cls, method, wrapped)
