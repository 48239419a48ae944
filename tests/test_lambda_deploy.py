"""`dogclf lambda-deploy` against the moto server over HTTP: role, policy, function, version,
alias, reserved + provisioned concurrency, function URL, idempotency, --dry-run, teardown."""

from __future__ import annotations

import json
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from aws_support import READ_ONLY, record_operations
from typer.testing import CliRunner

from dogclf.aws import iam, lambda_fn
from dogclf.aws.session import AwsContext
from dogclf.cli import app
from dogclf.commands.plans import apply_plan
from dogclf.config import load_config
from dogclf.local.emulator import Emulator
from dogclf.plan import Plan

ACCOUNT, REGION = "123456789012", "us-east-1"
FUNCTION, ROLE, POLICY = (
    "dogclf-dev-predict",
    "dogclf-dev-lambda-role",
    "dogclf-dev-invoke-endpoint",
)
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
LOG_GROUP = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{FUNCTION}"
BASE_POLICY = [
    {
        "Sid": "InvokeEndpoint",
        "Effect": "Allow",
        "Action": "sagemaker:InvokeEndpoint",
        "Resource": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/dogclf-dev",
    },
    {
        "Sid": "CreateLogGroup",
        "Effect": "Allow",
        "Action": "logs:CreateLogGroup",
        "Resource": f"{LOG_GROUP}:*",
    },
    {
        "Sid": "WriteLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": f"{LOG_GROUP}:log-stream:*",
    },
]
S3_STATEMENT = {
    "Sid": "ReadInputImages",
    "Effect": "Allow",
    "Action": "s3:GetObject",
    "Resource": "arn:aws:s3:::dogclf-test-bucket/dogclf/dev/data/*",
}
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}

runner = CliRunner()


@pytest.fixture
def project(aws: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_config(root: Path, **lambda_keys: Any) -> Path:
    lines = ['[aws]\nbucket = "dogclf-test-bucket"\n', "[lambda]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in lambda_keys.items()]
    path = root / "dogclf.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def deploy(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["lambda-deploy", "--json", *args])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def lam() -> Any:
    return AwsContext().client("lambda")


def iam_client() -> Any:
    return AwsContext().client("iam")


def versions() -> list[str]:
    found = lam().list_versions_by_function(FunctionName=FUNCTION)["Versions"]
    return [v["Version"] for v in found if v["Version"] != "$LATEST"]


def test_first_deploy_creates_the_least_privilege_stack(project: Path) -> None:
    write_config(project, memory_mb=512, reserved_concurrency=4, provisioned_concurrency=2)
    doc = deploy()
    assert doc["plan"]["counts"]["create"] == 7  # role, policy, function, version, alias, 2x conc.

    role = iam_client().get_role(RoleName=ROLE)["Role"]
    assert role["AssumeRolePolicyDocument"] == TRUST
    assert {t["Key"]: t["Value"] for t in role["Tags"]}["dogclf:stage"] == "dev"
    assert iam_client().list_role_policies(RoleName=ROLE)["PolicyNames"] == [POLICY]
    assert iam_client().list_attached_role_policies(RoleName=ROLE)["AttachedPolicies"] == []
    document = iam_client().get_role_policy(RoleName=ROLE, PolicyName=POLICY)["PolicyDocument"]
    assert document == {"Version": "2012-10-17", "Statement": BASE_POLICY}

    found = lam().get_function(FunctionName=FUNCTION)
    config = found["Configuration"]
    assert config["Runtime"] == "python3.12"
    assert config["Architectures"] == ["arm64"]
    assert config["MemorySize"] == 512
    assert config["Timeout"] == 30
    assert config["Handler"] == "lambda_handler.handler.handler"
    assert config["Role"] == ROLE_ARN
    assert config["CodeSha256"] == lambda_fn.code_sha256(lambda_fn.build_zip())
    assert config["Environment"]["Variables"] == {
        "ENDPOINT_NAME": "dogclf-dev",
        "TOP_K": "5",
        "MAX_PAYLOAD_BYTES": str(int(5.5 * 1024 * 1024)),
        "ENDPOINT_TIMEOUT_S": "14",
        "ENDPOINT_MAX_ATTEMPTS": "2",
    }
    assert found["Tags"]["dogclf:project"] == "dogclf"

    assert versions() == ["1"]
    assert lam().get_alias(FunctionName=FUNCTION, Name="live")["FunctionVersion"] == "1"
    assert (
        lam().get_function_concurrency(FunctionName=FUNCTION)["ReservedConcurrentExecutions"] == 4
    )
    provisioned = lam().get_provisioned_concurrency_config(FunctionName=FUNCTION, Qualifier="live")
    assert provisioned["RequestedProvisionedConcurrentExecutions"] == 2
    assert provisioned["Status"] == "READY"
    assert doc["function"]["alias"]["version"] == "1"
    assert doc["function"]["provisioned_concurrency"] == {"requested": 2, "status": "READY"}


def test_second_run_uploads_nothing_and_publishes_nothing(project: Path) -> None:
    write_config(project, provisioned_concurrency=1)
    deploy()
    before = lam().get_function(FunctionName=FUNCTION)["Configuration"]

    doc = deploy()

    counts = doc["plan"]["counts"]
    assert counts["create"] == counts["update"] == counts["delete"] == 0, doc["plan"]
    after = lam().get_function(FunctionName=FUNCTION)["Configuration"]
    assert after["CodeSha256"] == before["CodeSha256"]
    assert after["LastModified"] == before["LastModified"]  # no code or config upload
    assert versions() == ["1"]


def test_changed_config_updates_publishes_and_moves_the_alias(project: Path) -> None:
    write_config(project, provisioned_concurrency=1)
    deploy()
    write_config(project, provisioned_concurrency=2, memory_mb=1024, top_k=3)

    doc = deploy()

    actions = {(s["resource"], s["action"]) for s in doc["plan"]["steps"]}
    assert ("lambda function", "update") in actions
    assert ("lambda version", "create") in actions
    assert ("lambda alias", "update") in actions
    assert ("provisioned concurrency", "update") in actions
    config = lam().get_function_configuration(FunctionName=FUNCTION)
    assert config["MemorySize"] == 1024
    assert config["Environment"]["Variables"]["TOP_K"] == "3"
    assert versions() == ["1", "2"]
    assert lam().get_alias(FunctionName=FUNCTION, Name="live")["FunctionVersion"] == "2"
    provisioned = lam().get_provisioned_concurrency_config(FunctionName=FUNCTION, Qualifier="live")
    assert (provisioned["RequestedProvisionedConcurrentExecutions"], provisioned["Status"]) == (
        2,
        "READY",
    )
    assert deploy()["plan"]["counts"]["update"] == 0


def test_dry_run_only_reads(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every AWS operation the dry run sends is recorded (botocore's before-call event)."""
    write_config(project, provisioned_concurrency=1, function_url=True)
    operations = record_operations(monkeypatch)
    doc = deploy("--dry-run")

    # role, policy, function, version, alias, provisioned, url: no reserve by default
    assert doc["dry_run"] is True and doc["plan"]["counts"]["create"] == 7
    assert operations, "the plan must come from describe calls"
    assert all(op.startswith(READ_ONLY) for op in operations), operations
    assert lam().list_functions()["Functions"] == []
    assert iam_client().list_roles()["Roles"] == []


def test_s3_input_adds_exactly_one_statement(project: Path) -> None:
    write_config(project, s3_input=True)
    deploy()
    document = iam_client().get_role_policy(RoleName=ROLE, PolicyName=POLICY)["PolicyDocument"]
    assert document == {"Version": "2012-10-17", "Statement": [*BASE_POLICY, S3_STATEMENT]}
    env = lam().get_function_configuration(FunctionName=FUNCTION)["Environment"]["Variables"]
    assert env["ALLOWED_S3_PREFIX"] == "s3://dogclf-test-bucket/dogclf/dev/data/"


@pytest.mark.parametrize("s3_input", [False, True])
def test_generated_policies_pass_parliament(s3_input: bool) -> None:
    parliament = pytest.importorskip("parliament")
    cfg = load_config(
        environ={
            "DOGCLF_AWS__BUCKET": "dogclf-test-bucket",
            "DOGCLF_LAMBDA__S3_INPUT": str(s3_input),
        }
    )
    policy = iam.execution_policy(cfg, partition="aws", region=REGION, account=ACCOUNT)
    findings = parliament.analyze_policy_string(json.dumps(policy)).findings
    assert [str(f) for f in findings] == []
    # parliament lints identity policies; a trust policy has no Resource by IAM's grammar,
    # so that is the one (expected) finding there and anything else would be a real one.
    trust = parliament.analyze_policy_string(json.dumps(iam.trust_policy())).findings
    assert [f.issue for f in trust] == ["MALFORMED"]
    assert "neither Resource nor NotResource" in str(trust[0])


def test_foreign_policies_on_the_role_are_removed(project: Path) -> None:
    write_config(project)
    deploy()
    # moto does not preload AWS's managed policies: a customer-managed stand-in of that name.
    everything = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "sagemaker:*", "Resource": "*"}],
        }
    )
    full_access = iam_client().create_policy(
        PolicyName="AmazonSageMakerFullAccess", PolicyDocument=everything
    )["Policy"]["Arn"]
    iam_client().attach_role_policy(RoleName=ROLE, PolicyArn=full_access)
    iam_client().put_role_policy(RoleName=ROLE, PolicyName="extra", PolicyDocument=everything)

    doc = deploy()

    deleted = {s["name"] for s in doc["plan"]["steps"] if s["action"] == "delete"}
    assert deleted == {"AmazonSageMakerFullAccess", "extra"}
    assert iam_client().list_attached_role_policies(RoleName=ROLE)["AttachedPolicies"] == []
    assert iam_client().list_role_policies(RoleName=ROLE)["PolicyNames"] == [POLICY]


def test_function_url_uses_iam_auth_by_default(project: Path) -> None:
    write_config(project, function_url=True)
    doc = deploy()
    url = lam().get_function_url_config(FunctionName=FUNCTION, Qualifier="live")
    assert url["AuthType"] == "AWS_IAM"
    assert doc["function"]["url"] == url["FunctionUrl"]
    write_config(project, function_url=False)
    deleted = [s for s in deploy()["plan"]["steps"] if s["action"] == "delete"]
    assert [s["resource"] for s in deleted] == ["function url"]


def test_shrinking_concurrency_lowers_provisioned_before_reserved(project: Path) -> None:
    write_config(project, reserved_concurrency=5, provisioned_concurrency=4)
    deploy()
    write_config(project, reserved_concurrency=2, provisioned_concurrency=1)
    steps = [s["resource"] for s in deploy()["plan"]["steps"] if s["action"] != "no-op"]
    assert steps == ["provisioned concurrency", "reserved concurrency"]
    assert (
        lam().get_function_concurrency(FunctionName=FUNCTION)["ReservedConcurrentExecutions"] == 2
    )


def test_missing_bucket_with_s3_input_is_one_error_line(project: Path) -> None:
    (project / "dogclf.toml").write_text("[lambda]\ns3_input = true\n")
    result = runner.invoke(app, ["lambda-deploy"])
    assert result.exit_code == 1
    assert "aws.bucket is not set" in result.output and "Traceback" not in result.output


def test_teardown_steps_remove_everything_then_nothing(project: Path) -> None:
    write_config(project, reserved_concurrency=2, provisioned_concurrency=1, function_url=True)
    deploy()
    # The log group is what the function's first invocation creates.
    AwsContext().client("logs").create_log_group(logGroupName=f"/aws/lambda/{FUNCTION}")
    ctx, cfg = AwsContext(), load_config()

    steps = lambda_fn.delete_steps(ctx, cfg)

    kinds = [s.resource for s in steps]
    assert kinds == [
        "provisioned concurrency",
        "function url",
        "lambda alias",
        "reserved concurrency",
        "lambda function",
        "log group",
        "iam policy",
        "iam role",
    ]
    apply_plan(Plan("teardown", steps), quiet=True)
    assert lam().list_functions()["Functions"] == []
    assert iam_client().list_roles()["Roles"] == []
    assert lambda_fn.describe(ctx, cfg) is None
    assert lambda_fn.delete_steps(ctx, cfg) == []


def test_zip_is_deterministic_small_and_holds_only_the_handler(tmp_path: Path) -> None:
    import os
    import shutil

    first = lambda_fn.build_zip()
    copy = tmp_path / "lambda_handler"
    shutil.copytree(lambda_fn.HANDLER_DIR, copy)
    for path in copy.iterdir():
        os.utime(path, (1_700_000_000, 1_700_000_000))  # other mtimes, same bytes
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "x.pyc").write_bytes(b"junk")
    assert lambda_fn.build_zip(copy) == first
    names = zipfile.ZipFile(BytesIO(first)).namelist()
    assert names == sorted(names)
    assert set(names) == {f"lambda_handler/{p.name}" for p in lambda_fn.HANDLER_DIR.glob("*.py")}
    assert len(first) <= 20 * 1024


def test_function_creation_waits_for_the_role_to_propagate(project: Path) -> None:
    """The role only "reaches" Lambda at the third CreateFunction (moto answers the missing
    role exactly as AWS answers a fresh one: "cannot be assumed by Lambda")."""
    write_config(project)
    ctx, cfg = AwsContext(), load_config()
    plan = lambda_fn.plan_deploy(ctx, cfg, poll_interval=0)
    create_role, put_policy, *rest = plan.steps
    assert (create_role.resource, put_policy.resource) == ("iam role", "iam policy")
    attempts: list[str] = []

    def propagate_late(**_: Any) -> None:
        attempts.append("CreateFunction")
        if len(attempts) == 3:
            create_role.apply()

    # before-send: once per request on the wire (session.py's retries are inside one call).
    ctx.client("lambda").meta.events.register("before-send.lambda.CreateFunction", propagate_late)
    apply_plan(Plan("deploy, role late", rest), quiet=True)
    put_policy.apply()

    assert len(attempts) == 3
    assert lam().get_alias(FunctionName=FUNCTION, Name="live")["FunctionVersion"] == "1"


def test_role_propagation_retry_gives_up_with_one_error(project: Path) -> None:
    from dogclf.errors import AwsError

    write_config(project)
    ctx, cfg = AwsContext(), load_config()
    plan = lambda_fn.plan_deploy(ctx, cfg, poll_interval=0)
    function_step = next(s for s in plan.steps if s.resource == "lambda function")
    attempts: list[str] = []  # requests on the wire: session.py's retries included
    ctx.client("lambda").meta.events.register(
        "before-send.lambda.CreateFunction", lambda **_: attempts.append("x")
    )
    with pytest.raises(AwsError, match="cannot be assumed by Lambda"):
        function_step.apply()  # the role step never ran: no wait makes it assumable
    # Retried with backoff until the emulator's bound (DOGCLF_ROLE_WAIT_S), then one error.
    assert 2 <= len(attempts) <= 8


def test_waiting_for_provisioned_concurrency_polls_until_ready() -> None:
    """moto_ext answers READY at once; AWS takes minutes. A scripted client stands in to show
    the loop polls with the injected interval and turns FAILED into one error."""
    from dogclf.errors import ResourceFailedError

    class Scripted:
        def __init__(self, statuses: list[str]) -> None:
            self.statuses = statuses

        def get_provisioned_concurrency_config(self, **_: Any) -> dict[str, Any]:
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return {
                "Status": status,
                "StatusReason": "quota",
                "RequestedProvisionedConcurrentExecutions": 2,
            }

    sleeps: list[float] = []
    ready = lambda_fn.wait_provisioned_ready(
        Scripted(["IN_PROGRESS", "IN_PROGRESS", "READY"]),
        "f",
        "live",
        poll_interval=0.5,
        sleep=sleeps.append,
    )
    assert ready["Status"] == "READY" and sleeps == [0.5, 0.5]
    with pytest.raises(ResourceFailedError, match="quota"):
        lambda_fn.wait_provisioned_ready(Scripted(["FAILED"]), "f", "live", sleep=sleeps.append)
