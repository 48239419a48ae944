"""The emulator's Lambda runtime: deployed zips run under AWS's runtime interface client
(awslambdaric) against the Runtime API moto_ext serves, reached only through moto's Invoke
over HTTP (boto3). Handler resolution, the context object and the error JSON are therefore
awslambdaric's; what Lambda itself adds (timeouts, the log stream, warm environments) is
moto_ext's, checked here against the words Lambda uses.

dogclf's own handler talks to a real `dogclf serve` (the suite's `served` fixture); the other
functions are tiny zips written here, each showing one thing.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import os
import re
import time
import uuid
import zipfile
from typing import Any

import pytest
from serving_support import Served

from dogclf.local.emulator import Emulator
from dogclf.local.moto_ext import enable_lambda_runtime

PROBE = """
import os, time

print("init: module loaded")
COUNT = 0


def context(event, context):
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "execution_env": os.environ["AWS_EXECUTION_ENV"],
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "cwd": os.getcwd(),
    }


def count(event, context):
    global COUNT
    COUNT += 1
    return {"pid": os.getpid(), "count": COUNT}


def fail(event, context):
    raise ValueError(f"no dog called {event['name']}")


def crash(event, context):
    os._exit(3)


def sleep(event, context):
    print(f"pid {os.getpid()} sleeping")
    time.sleep(600)
"""


def zip_of(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def lambda_client() -> Any:
    import boto3

    return boto3.client("lambda")


def deploy(name: str, handler: str, code: bytes, **config: Any) -> str:
    """create_function in moto (a role first, as Lambda wants one); returns the name."""
    import boto3

    role = boto3.client("iam").create_role(
        RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )["Role"]["Arn"]
    lambda_client().create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler=handler,
        Code={"ZipFile": code},
        **{"Timeout": 30, "MemorySize": 512, **config},
    )
    return name


def invoke(name: str, event: Any, qualifier: str | None = None) -> tuple[str | None, Any]:
    """(FunctionError or None, the decoded payload), through moto's Invoke."""
    args = {"Qualifier": qualifier} if qualifier else {}
    response = lambda_client().invoke(FunctionName=name, Payload=json.dumps(event), **args)
    return response.get("FunctionError"), json.loads(response["Payload"].read())


def log_events(name: str) -> list[str]:
    import boto3

    logs = boto3.client("logs")
    events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
    return [e["message"] for e in sorted(events, key=lambda e: e["timestamp"])]


def log_streams(name: str) -> list[str]:
    import boto3

    logs = boto3.client("logs")
    found = logs.describe_log_streams(logGroupName=f"/aws/lambda/{name}")["logStreams"]
    return [s["logStreamName"] for s in found]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def runtime_on(aws: Emulator) -> Emulator:
    enable_lambda_runtime(aws.url)
    return aws


# ================================================================ dogclf's handler


@pytest.mark.slow
def test_dogclfs_handler_answers_as_a_direct_call(
    aws: Emulator, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deployed zip under awslambdaric, and the same handler imported here and called
    with awslambdaric's own LambdaContext carrying the request id the runtime gave."""
    from awslambdaric.lambda_context import LambdaContext

    from dogclf.aws.lambda_fn import HANDLER, build_zip

    env = {"ENDPOINT_NAME": "dogclf-dev", "TOP_K": "2"}
    deploy("dogclf-dev-predict", HANDLER, build_zip(), Environment={"Variables": env})
    enable_lambda_runtime(aws.url, {"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": served.url})
    image = served.model.test_images()[0][0].read_bytes()
    events = [
        {"image": base64.b64encode(image).decode()},
        {"image": base64.b64encode(b"this is not an image").decode()},
        {"nope": 1},
    ]
    via_lambda = [invoke("dogclf-dev-predict", event) for event in events]
    assert [error for error, _ in via_lambda] == [None, None, None]
    assert [answer["statusCode"] for _, answer in via_lambda] == [200, 415, 400]

    for name, value in {**env, "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": served.url}.items():
        monkeypatch.setenv(name, value)
    direct = importlib.reload(importlib.import_module("dogclf.lambda_handler.handler"))
    for event, (_, answer) in zip(events, via_lambda, strict=True):
        request_id = json.loads(answer["body"])["request_id"]
        uuid.UUID(request_id)  # the runtime's, not the handler's fallback
        context = LambdaContext(request_id, None, None, int(time.time() * 1000) + 30_000)
        assert direct.handler(event, context) == answer


# ================================================================ Lambda's error shapes


def test_a_handler_exception_is_formatted_as_lambda_does(runtime_on: Emulator) -> None:
    deploy("probe", "probe.fail", zip_of({"probe.py": PROBE}))
    error, payload = invoke("probe", {"name": "Rex"})
    assert error == "Unhandled"
    assert set(payload) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert payload["errorMessage"] == "no dog called Rex"
    assert payload["errorType"] == "ValueError"
    uuid.UUID(payload["requestId"])
    frame = payload["stackTrace"][-1]
    assert frame.startswith("  File ") and 'probe.py", line ' in frame and ", in fail" in frame
    # The same error, one log event (awslambdaric's [ERROR] line with its traceback).
    logged = [m for m in log_events("probe") if m.startswith("[ERROR]")]
    assert len(logged) == 1
    assert logged[0].startswith("[ERROR] ValueError: no dog called Rex\nTraceback")


BAD_HANDLERS = [
    ("missing.handler", "Runtime.ImportModuleError", "Unable to import module 'missing': No module named 'missing'"),
    ("needs.handler", "Runtime.ImportModuleError", "Unable to import module 'needs': No module named 'no_such_lib'"),
    ("probe.nothere", "Runtime.HandlerNotFound", "Handler 'nothere' missing on module 'probe'"),
    ("probe", "Runtime.MalformedHandlerName", "Bad handler 'probe': not enough values to unpack (expected 2, got 1)"),
    ("broken.handler", "Runtime.UserCodeSyntaxError", "Syntax error in module 'broken': "),
]  # fmt: skip


@pytest.mark.parametrize(("handler", "error_type", "message"), BAD_HANDLERS)
def test_a_bad_handler_answers_as_lambda_does(
    runtime_on: Emulator, handler: str, error_type: str, message: str
) -> None:
    files = {"probe.py": PROBE, "needs.py": "import no_such_lib\n", "broken.py": "def (:\n"}
    deploy("bad", handler, zip_of(files))
    error, payload = invoke("bad", {})
    assert error == "Unhandled"
    assert payload["errorType"] == error_type
    assert payload["errorMessage"].startswith(message)
    assert payload["requestId"] == ""  # an init error belongs to no invocation


def test_a_handler_past_its_timeout_is_killed(runtime_on: Emulator) -> None:
    deploy("slow", "probe.sleep", zip_of({"probe.py": PROBE}), Timeout=1)
    error, payload = invoke("slow", {})
    assert error == "Unhandled"
    assert set(payload) == {"errorMessage"}
    stamp, request_id, rest = payload["errorMessage"].split(" ", 2)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    uuid.UUID(request_id)
    assert re.fullmatch(r"Task timed out after 1\.\d\d seconds", rest)
    pid = int(next(m for m in log_events("slow") if m.endswith("sleeping")).split()[1])
    assert gone(pid)
    # The next invoke gets a fresh environment (and times out again, not "busy").
    assert invoke("slow", {})[0] == "Unhandled"


def test_a_runtime_that_exits_answers_as_lambda_does(runtime_on: Emulator) -> None:
    deploy("crash", "probe.crash", zip_of({"probe.py": PROBE}))
    error, payload = invoke("crash", {})
    assert error == "Unhandled"
    assert payload["errorType"] == "Runtime.ExitError"
    request_id, reason = payload["errorMessage"].removeprefix("RequestId: ").split(" ", 1)
    uuid.UUID(request_id)
    assert reason == "Error: Runtime exited with error: exit status 3"


# ================================================================ what the handler sees


def test_the_context_object_as_the_handler_sees_it(runtime_on: Emulator) -> None:
    lam = lambda_client()
    deploy("ctx", "probe.context", zip_of({"probe.py": PROBE}), MemorySize=384, Timeout=7)
    version = lam.publish_version(FunctionName="ctx")["Version"]
    lam.create_alias(FunctionName="ctx", Name="live", FunctionVersion=version)
    error, seen = invoke("ctx", {}, qualifier="live")
    assert error is None
    assert seen["function_name"] == "ctx"
    assert seen["function_version"] == version
    assert seen["invoked_function_arn"] == "arn:aws:lambda:us-east-1:123456789012:function:ctx:live"
    assert seen["memory_limit_in_mb"] == "384"  # a string, as awslambdaric reads it
    assert 0 < seen["remaining_ms"] <= 7000
    assert seen["log_group_name"] == "/aws/lambda/ctx"
    assert seen["execution_env"] == "AWS_Lambda_python3.12"
    assert seen["task_root"] == seen["cwd"]
    # The request id is the invocation's, the stream the environment's: both in the log.
    logged = log_events("ctx")
    assert logged[0] == "init: module loaded"  # init output comes before START
    assert logged[1] == f"START RequestId: {seen['aws_request_id']} Version: {version}"
    assert logged[-1].startswith(f"REPORT RequestId: {seen['aws_request_id']}\tDuration: ")
    streams = log_streams("ctx")
    assert streams == [seen["log_stream_name"]]
    assert re.fullmatch(rf"\d{{4}}/\d\d/\d\d/\[{version}\][0-9a-f]{{32}}", streams[0])


def test_an_environment_stays_warm_until_the_function_or_the_emulator_changes(
    runtime_on: Emulator,
) -> None:
    deploy("warm", "probe.count", zip_of({"probe.py": PROBE}))
    first, second = invoke("warm", {})[1], invoke("warm", {})[1]
    assert (first["count"], second["count"]) == (1, 2) and first["pid"] == second["pid"]
    lambda_client().update_function_configuration(
        FunctionName="warm", Environment={"Variables": {"CHANGED": "1"}}
    )
    changed = invoke("warm", {})[1]
    assert changed["count"] == 1 and gone(first["pid"])
    runtime_on.reset()  # moto's reset tears every environment down
    assert gone(changed["pid"])
