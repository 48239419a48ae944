"""One Lambda invocation, run by lambda_runtime.py in a fresh interpreter (a cold start).

Started as `python lambda_runner.py` (by path, so it needs no dogclf on the path) with the
function's unpacked zip as its working directory, the event on stdin and the invocation in
the environment: _HANDLER ("module.function"), _DOGCLF_RESULT (where to write the outcome),
_DOGCLF_REQUEST_ID, _DOGCLF_INVOKED_ARN, _DOGCLF_TIMEOUT and the AWS_LAMBDA_* variables
AWS's runtime sets. It writes {"result": ...} or {"error": {"errorMessage", "errorType"}}
to _DOGCLF_RESULT; a handler's traceback goes to stderr, which becomes the function's log.
Standard library only: it runs in the function's world, not dogclf's.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any


class Context:
    """The part of AWS's LambdaContext that handlers use."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.aws_request_id = env["_DOGCLF_REQUEST_ID"]
        self.function_name = env["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = env["AWS_LAMBDA_FUNCTION_VERSION"]
        self.invoked_function_arn = env["_DOGCLF_INVOKED_ARN"]
        self.memory_limit_in_mb = env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
        self.log_group_name = env["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = env["AWS_LAMBDA_LOG_STREAM_NAME"]
        self._deadline = time.monotonic() + float(env["_DOGCLF_TIMEOUT"])

    def get_remaining_time_in_millis(self) -> int:
        return int(max(0.0, self._deadline - time.monotonic()) * 1000)


def invoke(handler_name: str, event: Any, context: Context) -> dict[str, Any]:
    """Import the handler and call it; its exception becomes Lambda's error payload."""
    try:
        module, _, name = handler_name.rpartition(".")
        return {"result": getattr(importlib.import_module(module), name)(event, context)}
    except Exception as exc:
        traceback.print_exc()
        return {"error": {"errorMessage": str(exc), "errorType": type(exc).__name__}}


def main() -> None:
    # The function's code is imported from the working directory, as on AWS; python put
    # this file's folder first on the path, and nothing of it may be imported by a handler.
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)
    sys.path.insert(0, os.getcwd())
    context = Context(os.environ)  # the timeout counts from the interpreter's start
    event = json.loads(sys.stdin.read() or "{}")
    outcome = invoke(os.environ["_HANDLER"], event, context)
    with open(os.environ["_DOGCLF_RESULT"], "w") as handle:
        json.dump(outcome, handle, default=str)


if __name__ == "__main__":
    main()
