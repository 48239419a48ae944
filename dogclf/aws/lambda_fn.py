"""The Lambda function: deterministic zip, create/update, version, alias, concurrency, URL.

`plan_deploy` reads what exists (read-only calls) and returns a Plan whose steps make it
match the config; an unchanged function plans only no-ops: the zip is byte-for-byte the
same for the same source (sorted entries, fixed timestamps and modes), so its CodeSha256
matches and nothing is uploaded or published. `describe` and `delete_steps` serve
`status` and `teardown`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.exceptions

from dogclf.aws import iam, serverless
from dogclf.aws.polling import wait_until
from dogclf.aws.session import (
    AwsContext,
    aws_errors,
    call,
    delete_step,
    deleter,
    error_code,
    get_or_none,
)
from dogclf.errors import DogclfError, ResourceFailedError
from dogclf.plan import Action, Plan, Step

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

HANDLER_DIR = Path(__file__).resolve().parent.parent / "lambda_handler"
PACKAGE = "lambda_handler"  # the folder name inside the zip
HANDLER = f"{PACKAGE}.handler.handler"
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can hold: no build-time leak
DESCRIPTION = "dogclf: top-k dog breeds from the SageMaker endpoint"
POLL_INTERVAL = 5.0
FUNCTION_WAIT_S = 300.0
PROVISIONED_WAIT_S = 900.0
URL_PERMISSION_SID = "dogclf-function-url-public"
URL_INVOKE_SID = "dogclf-function-url-invoke"
# What a public (AuthType NONE) URL needs in the alias's resource policy: since October
# 2025 a new URL answers 403 unless both statements exist (AWS's "Control access to Lambda
# function URLs"); the second one only applies to calls that come through the URL.
PUBLIC_URL_PERMISSIONS: dict[str, dict[str, Any]] = {
    URL_PERMISSION_SID: {
        "Action": "lambda:InvokeFunctionUrl",
        "Principal": "*",
        "FunctionUrlAuthType": "NONE",
    },
    URL_INVOKE_SID: {
        "Action": "lambda:InvokeFunction",
        "Principal": "*",
        "InvokedViaFunctionUrl": True,
    },
}
# PutFunctionConcurrency keeps this much of the account's concurrency unreserved, or all of
# it when the account's limit is lower (new accounts often have 10: "below its minimum
# value of [10]"). Provisioned concurrency of a function without a reserve counts too.
UNRESERVED_MINIMUM = 100


# ---------------------------------------------------------------- the code bundle


def build_zip(source: Path = HANDLER_DIR) -> bytes:
    """The handler package as a zip that depends only on the files' names and bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(source.glob("*.py")):
            info = zipfile.ZipInfo(f"{PACKAGE}/{path.name}", date_time=ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so the mode bits below mean the same everywhere
            info.external_attr = 0o100644 << 16
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    return buffer.getvalue()


def code_sha256(data: bytes) -> str:
    """The digest Lambda reports as CodeSha256: base64 of the SHA-256 of the zip."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


# ---------------------------------------------------------------- what the config asks for


def handler_environment(cfg: DogclfConfig) -> dict[str, str]:
    """What lambda_handler/handler.py reads from its environment."""
    section = cfg.lambda_
    env = {
        "ENDPOINT_NAME": cfg.names.endpoint,
        "TOP_K": str(section.top_k),
        # A serverless endpoint takes 4 MB requests (6 MB real-time): refused here, not there.
        "MAX_PAYLOAD_BYTES": str(serverless.max_request_bytes(cfg, section.max_payload_mb)),
        # Two attempts must fit in the function's timeout, with a second to answer 504.
        "ENDPOINT_TIMEOUT_S": str(max(1, (section.timeout_s - 1) // 2)),
        "ENDPOINT_MAX_ATTEMPTS": "2",
    }
    if section.s3_input:
        env["ALLOWED_S3_PREFIX"] = cfg.s3_prefix("data") + "/"
    if serverless.is_serverless(cfg):
        env["ENDPOINT_MAX_BODY_BYTES"] = str(serverless.SERVERLESS_MAX_PAYLOAD_BYTES)
    return env


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    zip_bytes: bytes = field(repr=False)
    sha256: str
    configuration: dict[str, Any]  # the fields update_function_configuration takes
    architecture: str
    tags: dict[str, str]


def function_spec(cfg: DogclfConfig, role_arn: str) -> FunctionSpec:
    data = build_zip()
    section = cfg.lambda_
    return FunctionSpec(
        name=cfg.names.lambda_function,
        zip_bytes=data,
        sha256=code_sha256(data),
        configuration={
            "Role": role_arn,
            "Handler": HANDLER,
            "Runtime": section.runtime,
            "MemorySize": section.memory_mb,
            "Timeout": section.timeout_s,
            "Description": DESCRIPTION,
            "Environment": {"Variables": handler_environment(cfg)},
        },
        architecture=section.architecture,
        tags=cfg.tags,
    )


def config_changes(current: dict[str, Any], spec: FunctionSpec) -> list[str]:
    """Names of the configuration fields that differ from the spec."""
    changed = [
        key
        for key, want in spec.configuration.items()
        if key != "Environment" and current.get(key) != want
    ]
    have_env = (current.get("Environment") or {}).get("Variables") or {}
    if have_env != spec.configuration["Environment"]["Variables"]:
        changed.append("Environment")
    return changed


def code_changes(current: dict[str, Any], spec: FunctionSpec) -> list[str]:
    changed = []
    if current.get("CodeSha256") != spec.sha256:
        changed.append("code")
    if (current.get("Architectures") or ["x86_64"]) != [spec.architecture]:
        changed.append("architecture")
    return changed


# ---------------------------------------------------------------- what exists


@dataclass
class Deployed:
    """A read-only snapshot of the function and everything hanging off it."""

    function: dict[str, Any] | None = None  # get_function's Configuration
    tags: dict[str, str] = field(default_factory=dict)
    versions: list[dict[str, Any]] = field(default_factory=list)  # published, oldest first
    alias: dict[str, Any] | None = None
    reserved: int | None = None
    provisioned: dict[str, Any] | None = None
    url: dict[str, Any] | None = None
    policy_sids: set[str] = field(default_factory=set)  # statements on the alias

    @property
    def latest_version(self) -> dict[str, Any] | None:
        return self.versions[-1] if self.versions else None


def read_deployed(ctx: AwsContext, cfg: DogclfConfig) -> Deployed:
    lam = ctx.client("lambda")
    name, alias = cfg.names.lambda_function, cfg.lambda_.alias
    found = get_or_none(f"read Lambda function {name}", lam.get_function, FunctionName=name)
    if found is None:
        return Deployed()
    state = Deployed(function=found["Configuration"], tags=found.get("Tags") or {})
    state.reserved = (found.get("Concurrency") or {}).get("ReservedConcurrentExecutions")
    with aws_errors(f"list the versions of {name}"):
        pages = lam.get_paginator("list_versions_by_function").paginate(FunctionName=name)
        versions = [v for page in pages for v in page["Versions"] if v["Version"] != "$LATEST"]
    state.versions = sorted(versions, key=lambda v: int(v["Version"]))
    state.alias = get_or_none(
        f"read alias {alias} of {name}", lam.get_alias, FunctionName=name, Name=alias
    )
    if state.alias is not None:
        state.provisioned = _provisioned(lam, name, alias)
        state.url = get_or_none(
            f"read the function URL of {name}",
            lam.get_function_url_config,
            FunctionName=name,
            Qualifier=alias,
        )
        state.policy_sids = _policy_sids(lam, name, alias)
    return state


def _policy_sids(lam: Any, name: str, qualifier: str) -> set[str]:
    found = get_or_none(
        f"read the resource policy of {name}:{qualifier}",
        lam.get_policy,
        FunctionName=name,
        Qualifier=qualifier,
    )
    statements = json.loads(found["Policy"]).get("Statement", []) if found else []
    return {str(s["Sid"]) for s in statements if "Sid" in s}


def _provisioned(lam: Any, name: str, qualifier: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = get_or_none(
        f"read provisioned concurrency of {name}:{qualifier}",
        lam.get_provisioned_concurrency_config,
        FunctionName=name,
        Qualifier=qualifier,
    )
    return found


def same_build(version: dict[str, Any], spec: FunctionSpec) -> bool:
    """A published version is what the spec asks for: same code and configuration."""
    return not code_changes(version, spec) and not config_changes(version, spec)


# ---------------------------------------------------------------- the plan


@dataclass
class _Target:
    """What earlier steps learn while applying (the version they published)."""

    version: str | None = None


def plan_deploy(
    ctx: AwsContext, cfg: DogclfConfig, *, poll_interval: float = POLL_INTERVAL
) -> Plan:
    plan = Plan(f"lambda-deploy {cfg.names.lambda_function} ({cfg.stage})")
    role_arn = iam.plan_role(ctx, cfg, plan)
    spec = function_spec(cfg, role_arn)
    state = read_deployed(ctx, cfg)
    lam = ctx.client("lambda")
    check_concurrency_quota(read_account_concurrency(lam), cfg, state)
    target = _Target()
    function_changed = _plan_function(plan, lam, spec, state, poll_interval)
    _plan_version(plan, lam, spec, state, target, function_changed, poll_interval)
    alias_moves = _plan_alias(plan, lam, cfg, state, target)
    _plan_concurrency(plan, lam, cfg, state, alias_moves, poll_interval)
    _plan_url(plan, lam, cfg, state)
    return plan


def _plan_function(
    plan: Plan, lam: Any, spec: FunctionSpec, state: Deployed, poll_interval: float
) -> bool:
    """Returns whether the function's code or configuration will change."""
    name = spec.name
    if state.function is None:
        size_kb = len(spec.zip_bytes) / 1024
        plan.add(
            Action.CREATE,
            "lambda function",
            name,
            f"{spec.configuration['Runtime']} {spec.architecture}, "
            f"{spec.configuration['MemorySize']} MB, {size_kb:.1f} KB zip",
            partial(_create_function, lam, spec, poll_interval),
        )
        return True
    change = _FunctionChange(
        arn=state.function["FunctionArn"],
        code=code_changes(state.function, spec),
        config=config_changes(state.function, spec),
        tags={k: v for k, v in spec.tags.items() if state.tags.get(k) != v},
    )
    if not (change.code or change.config or change.tags):
        plan.add(Action.NOOP, "lambda function", name, f"code {spec.sha256[:10]} unchanged")
        return False
    what = change.code + [c.lower() for c in change.config] + (["tags"] if change.tags else [])
    update = partial(_update_function, lam, spec, change, poll_interval)
    plan.add(Action.UPDATE, "lambda function", name, "change " + ", ".join(what), update)
    return bool(change.code or change.config)


@dataclass(frozen=True)
class _FunctionChange:
    arn: str
    code: list[str]  # "code", "architecture"
    config: list[str]  # configuration field names
    tags: dict[str, str]  # tags to set


def _create_function(lam: Any, spec: FunctionSpec, poll_interval: float) -> None:
    # A role made a moment ago may not be assumable yet: session.py retries that, bounded.
    call(
        f"create Lambda function {spec.name}",
        lam.create_function,
        FunctionName=spec.name,
        Code={"ZipFile": spec.zip_bytes},
        Architectures=[spec.architecture],
        PackageType="Zip",
        Tags=spec.tags,
        **spec.configuration,
    )
    wait_function_ready(lam, spec.name, poll_interval=poll_interval)


def _update_function(
    lam: Any, spec: FunctionSpec, change: _FunctionChange, poll_interval: float
) -> None:
    name = spec.name
    if change.code:
        call(
            f"upload the code of {name}",
            lam.update_function_code,
            FunctionName=name,
            ZipFile=spec.zip_bytes,
            Architectures=[spec.architecture],
        )
        wait_function_ready(lam, name, poll_interval=poll_interval)
    if change.config:
        call(
            f"update the configuration of {name}",
            lam.update_function_configuration,
            FunctionName=name,
            **spec.configuration,
        )
        wait_function_ready(lam, name, poll_interval=poll_interval)
    if change.tags:
        call(f"tag {name}", lam.tag_resource, Resource=change.arn, Tags=change.tags)


def _plan_version(
    plan: Plan,
    lam: Any,
    spec: FunctionSpec,
    state: Deployed,
    target: _Target,
    function_changed: bool,
    poll_interval: float,
) -> None:
    latest = state.latest_version
    if not function_changed and latest is not None and same_build(latest, spec):
        target.version = latest["Version"]
        plan.add(
            Action.NOOP, "lambda version", spec.name, f"version {latest['Version']} is current"
        )
        return

    def publish() -> None:
        published = call(
            f"publish a version of {spec.name}",
            lam.publish_version,
            FunctionName=spec.name,
            CodeSha256=spec.sha256,  # refuses to publish code other than what was planned
        )
        target.version = published["Version"]
        wait_function_ready(lam, spec.name, qualifier=target.version, poll_interval=poll_interval)

    after = f" (after {latest['Version']})" if latest else ""
    plan.add(Action.CREATE, "lambda version", spec.name, f"publish a new version{after}", publish)


def _plan_alias(plan: Plan, lam: Any, cfg: DogclfConfig, state: Deployed, target: _Target) -> bool:
    """Returns whether the alias will point somewhere new (provisioned concurrency follows)."""
    name, alias = cfg.names.lambda_function, cfg.lambda_.alias
    current = state.alias
    weights = ((current or {}).get("RoutingConfig") or {}).get("AdditionalVersionWeights")
    if current is not None and target.version == current["FunctionVersion"] and not weights:
        plan.add(Action.NOOP, "lambda alias", f"{name}:{alias}", f"-> version {target.version}")
        return False

    def point() -> None:
        assert target.version is not None  # the version step ran first
        if current is None:
            call(
                f"create alias {alias}",
                lam.create_alias,
                FunctionName=name,
                Name=alias,
                FunctionVersion=target.version,
            )
        else:
            call(
                f"point alias {alias} at version {target.version}",
                lam.update_alias,
                FunctionName=name,
                Name=alias,
                FunctionVersion=target.version,
                RoutingConfig={"AdditionalVersionWeights": {}},
            )

    to = f"version {target.version}" if target.version else "the new version"
    was = f" (was {current['FunctionVersion']})" if current else ""
    plan.add(
        Action.CREATE if current is None else Action.UPDATE,
        "lambda alias",
        f"{name}:{alias}",
        f"-> {to}{was}",
        point,
    )
    return True


def _plan_concurrency(
    plan: Plan,
    lam: Any,
    cfg: DogclfConfig,
    state: Deployed,
    alias_moves: bool,
    poll_interval: float,
) -> None:
    """Reserved (function-wide cap) and provisioned (pre-warmed, on the alias).

    Provisioned must stay <= reserved at every moment, so a shrinking provisioned setting
    is applied before the reserved one and a growing one after it.
    """
    have = state.provisioned
    have_n = int(have["RequestedProvisionedConcurrentExecutions"]) if have else 0
    provisioned = _provisioned_step(lam, cfg, have, alias_moves, poll_interval)
    reserved = _reserved_step(lam, cfg, state.reserved)
    shrinking = cfg.lambda_.provisioned_concurrency < have_n
    ordered = [provisioned, reserved] if shrinking else [reserved, provisioned]
    plan.steps.extend(step for step in ordered if step is not None)


def _provisioned_step(
    lam: Any,
    cfg: DogclfConfig,
    have: dict[str, Any] | None,
    alias_moves: bool,
    poll_interval: float,
) -> Step | None:
    name, alias = cfg.names.lambda_function, cfg.lambda_.alias
    label, want = f"{name}:{alias}", cfg.lambda_.provisioned_concurrency
    have_n = int(have["RequestedProvisionedConcurrentExecutions"]) if have else 0
    if want == 0:
        if not have:
            return None
        return _provisioned_delete(lam, name, alias, f"remove {have_n} pre-warmed environments")
    if have and have_n == want and not alias_moves and have["Status"] == "READY":
        return Step(Action.NOOP, "provisioned concurrency", label, f"{want}, READY")

    def provision() -> None:
        # Moving the alias re-provisions the same count by itself: then only wait.
        if have_n != want:
            call(
                f"set provisioned concurrency {want} on {label}",
                lam.put_provisioned_concurrency_config,
                FunctionName=name,
                Qualifier=alias,
                ProvisionedConcurrentExecutions=want,
            )
        wait_provisioned_ready(lam, name, alias, poll_interval=poll_interval)

    message = f"{want} pre-warmed environments, wait for READY"
    return Step(
        Action.CREATE if have is None else Action.UPDATE,
        "provisioned concurrency",
        label,
        f"{have_n} -> {message}" if have else message,
        provision,
    )


def _reserved_step(lam: Any, cfg: DogclfConfig, have: int | None) -> Step:
    name, want = cfg.names.lambda_function, cfg.lambda_.reserved_concurrency
    if want == have:
        shown = "account pool" if want is None else str(want)
        return Step(Action.NOOP, "reserved concurrency", name, shown)
    if want is None:
        return _reserved_delete(lam, name, f"remove the cap of {have}: use the account pool")
    return Step(
        Action.CREATE if have is None else Action.UPDATE,
        "reserved concurrency",
        name,
        f"cap at {want}" + (f" (was {have})" if have is not None else ""),
        lambda: call(
            f"set reserved concurrency {want}",
            lam.put_function_concurrency,
            FunctionName=name,
            ReservedConcurrentExecutions=want,
        ),
    )


@dataclass(frozen=True)
class AccountConcurrency:
    """GetAccountSettings' concurrency figures for this account and region."""

    limit: int  # ConcurrentExecutions
    unreserved: int  # UnreservedConcurrentExecutions: the limit less every reserve

    @property
    def minimum(self) -> int:
        return min(UNRESERVED_MINIMUM, self.limit)


def read_account_concurrency(lam: Any) -> AccountConcurrency:
    settings = call("read the account's Lambda concurrency", lam.get_account_settings)
    limits = settings["AccountLimit"]
    return AccountConcurrency(
        int(limits["ConcurrentExecutions"]), int(limits["UnreservedConcurrentExecutions"])
    )


def _drawn(reserved: int | None, provisioned: int) -> int:
    """What a function takes from the unreserved pool: its reserve, else its provisioned."""
    return reserved if reserved is not None else provisioned


def check_concurrency_quota(
    account: AccountConcurrency, cfg: DogclfConfig, state: Deployed
) -> None:
    """Refuse, before anything is made, what PutFunctionConcurrency or
    PutProvisionedConcurrencyConfig would refuse after the function, version and alias."""
    section = cfg.lambda_
    have_provisioned = (
        int(state.provisioned["RequestedProvisionedConcurrentExecutions"])
        if state.provisioned
        else 0
    )
    have = _drawn(state.reserved, have_provisioned)
    want = _drawn(section.reserved_concurrency, section.provisioned_concurrency)
    free = account.unreserved + have  # this function's own share comes back first
    room = free - account.minimum
    if want <= have or want <= room:
        return
    reserving = section.reserved_concurrency is not None
    field_name = "reserved_concurrency" if reserving else "provisioned_concurrency"
    if room >= 1:
        fix = f"set lambda.{field_name} to at most {room}"
    elif reserving:
        fix = "leave lambda.reserved_concurrency unset (the function shares the account pool)"
    else:
        fix = "set lambda.provisioned_concurrency = 0"
    raise DogclfError(
        f"lambda.{field_name} = {want} does not fit this account: its Lambda concurrency "
        f"limit is {account.limit}, {free} is free for this function and AWS keeps "
        f"{account.minimum} unreserved; {fix}",
        'or raise the "Concurrent executions" quota in Service Quotas (AWS Lambda)',
    )


def _plan_url(plan: Plan, lam: Any, cfg: DogclfConfig, state: Deployed) -> None:
    name, alias = cfg.names.lambda_function, cfg.lambda_.alias
    want, auth = cfg.lambda_.function_url, cfg.lambda_.function_url_auth
    current = state.url
    label = f"{name}:{alias}"
    if not want:
        if current is not None:
            plan.steps.append(_url_delete(lam, name, alias, current["FunctionUrl"]))
        return
    public = auth == "NONE"
    ours = set(PUBLIC_URL_PERMISSIONS)
    to_fix = ours - state.policy_sids if public else ours & state.policy_sids
    url_ok = current is not None and current.get("AuthType") == auth
    if current is not None and url_ok and not to_fix:
        plan.add(Action.NOOP, "function url", label, f"{current['FunctionUrl']} ({auth})")
        return

    def apply() -> None:
        if not url_ok:
            fn = (
                lam.create_function_url_config
                if current is None
                else lam.update_function_url_config
            )
            call(
                "configure the function URL", fn, FunctionName=name, Qualifier=alias, AuthType=auth
            )
        _url_permissions(lam, name, alias, public=public)

    actions = " and ".join(p["Action"] for p in PUBLIC_URL_PERMISSIONS.values())
    if url_ok:
        verb = "add" if public else "remove"
        fixing = sorted(PUBLIC_URL_PERMISSIONS[sid]["Action"] for sid in to_fix)
        message = f"{verb} the public {' and '.join(fixing)} permission"
    elif public:
        message = f"auth NONE (public, no auth: {actions} for anyone)"
    else:
        message = f"auth AWS_IAM (callers need {actions} on {label})"
    action = Action.CREATE if current is None else Action.UPDATE
    plan.add(action, "function url", label, message, apply)


def _url_permissions(lam: Any, name: str, alias: str, *, public: bool) -> None:
    """AuthType NONE needs both public statements on the alias; AWS_IAM must have neither.
    A statement already there (or already gone) counts as done, so a re-run changes nothing."""
    what = "set the function URL permissions"
    target: dict[str, Any] = {"FunctionName": name, "Qualifier": alias}
    for sid, statement in PUBLIC_URL_PERMISSIONS.items():
        if not public:
            deleter(what, lam.remove_permission, StatementId=sid, **target)()
            continue
        try:
            lam.add_permission(StatementId=sid, **statement, **target)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "ResourceConflictException":
                with aws_errors(what):
                    raise


# ---------------------------------------------------------------- deleting


def _provisioned_delete(lam: Any, name: str, alias: str, message: str) -> Step:
    return delete_step(
        "provisioned concurrency",
        f"{name}:{alias}",
        message,
        "delete provisioned concurrency",
        lam.delete_provisioned_concurrency_config,
        FunctionName=name,
        Qualifier=alias,
    )


def _reserved_delete(lam: Any, name: str, message: str) -> Step:
    fn = lam.delete_function_concurrency
    what = "remove reserved concurrency"
    return delete_step("reserved concurrency", name, message, what, fn, FunctionName=name)


def _url_delete(lam: Any, name: str, alias: str, url: str) -> Step:
    fn, what = lam.delete_function_url_config, "delete the function URL"
    return delete_step(
        "function url", f"{name}:{alias}", url, what, fn, FunctionName=name, Qualifier=alias
    )


# ---------------------------------------------------------------- waiting


def _function_status(config: dict[str, Any]) -> str:
    state, update = config.get("State", "Active"), config.get("LastUpdateStatus", "Successful")
    return "Failed" if "Failed" in (state, update) else f"{state}/{update}"


def wait_function_ready(
    lam: Any,
    name: str,
    *,
    qualifier: str | None = None,
    poll_interval: float = POLL_INTERVAL,
    timeout: float = FUNCTION_WAIT_S,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Until the function (version) is Active and its last update Successful."""
    extra = {"Qualifier": qualifier} if qualifier else {}
    config: dict[str, Any] = wait_until(
        lambda: call(
            f"read the state of {name}", lam.get_function_configuration, FunctionName=name, **extra
        ),
        _function_status,
        ("Active/Successful", "Failed"),
        what=f"Lambda function {name}",
        poll_interval=poll_interval,
        timeout=timeout,
        sleep=sleep,
    )
    if _function_status(config) == "Failed":
        reason = config.get("StateReason") or config.get("LastUpdateStatusReason") or "unknown"
        raise ResourceFailedError(
            f"Lambda function {name} failed: {reason}",
            "fix the cause above and run `dogclf lambda-deploy` again",
        )
    return config


def wait_provisioned_ready(
    lam: Any,
    name: str,
    qualifier: str,
    *,
    poll_interval: float = POLL_INTERVAL,
    timeout: float = PROVISIONED_WAIT_S,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Until the alias's pre-warmed environments are all allocated (READY)."""
    config = wait_until(
        lambda: _provisioned(lam, name, qualifier),
        lambda c: c["Status"] if c else "missing",
        ("READY", "FAILED", "missing"),
        what=f"provisioned concurrency on {name}:{qualifier}",
        poll_interval=poll_interval,
        timeout=timeout,
        sleep=sleep,
    )
    if config is None or config["Status"] != "READY":
        reason = (config or {}).get("StatusReason") or "the configuration disappeared"
        raise ResourceFailedError(
            f"provisioned concurrency on {name}:{qualifier} failed: {reason}",
            "lower lambda.provisioned_concurrency or raise the account's concurrency quota",
        )
    return config


# ---------------------------------------------------------------- status / teardown


def describe(ctx: AwsContext, cfg: DogclfConfig) -> dict[str, Any] | None:
    """What `status` shows for the function, or None when it does not exist."""
    state = read_deployed(ctx, cfg)
    if state.function is None:
        return None
    fn = state.function
    return {
        "name": fn["FunctionName"],
        "arn": fn["FunctionArn"],
        "state": fn.get("State", "Active"),
        "runtime": fn.get("Runtime"),
        "architecture": (fn.get("Architectures") or ["x86_64"])[0],
        "memory_mb": fn.get("MemorySize"),
        "code_sha256": fn.get("CodeSha256"),
        "versions": [v["Version"] for v in state.versions],
        "alias": state.alias
        and {
            "name": state.alias["Name"],
            "version": state.alias["FunctionVersion"],
            "arn": state.alias["AliasArn"],
        },
        "reserved_concurrency": state.reserved,
        "provisioned_concurrency": state.provisioned
        and {
            "requested": state.provisioned["RequestedProvisionedConcurrentExecutions"],
            "status": state.provisioned["Status"],
        },
        "url": state.url and state.url["FunctionUrl"],
        "role": iam.describe_role(ctx, cfg),
        "log_group": _log_group(ctx, cfg),
    }


def _log_group(ctx: AwsContext, cfg: DogclfConfig) -> str | None:
    name = cfg.names.log_group
    with aws_errors(f"look up log group {name}"):
        groups = ctx.client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    return name if any(g["logGroupName"] == name for g in groups) else None


def delete_steps(ctx: AwsContext, cfg: DogclfConfig) -> list[Step]:
    """Everything lambda-deploy made, its role last, in an order AWS accepts; empty when
    nothing exists. Each step succeeds when its thing is already gone."""
    lam = ctx.client("lambda")
    name, alias = cfg.names.lambda_function, cfg.lambda_.alias
    state = read_deployed(ctx, cfg)
    steps: list[Step] = []
    if state.provisioned:
        count = state.provisioned["RequestedProvisionedConcurrentExecutions"]
        steps.append(_provisioned_delete(lam, name, alias, f"{count} environments"))
    if state.url:
        steps.append(_url_delete(lam, name, alias, state.url["FunctionUrl"]))
    if state.alias:
        was = f"-> version {state.alias['FunctionVersion']}"
        fn = lam.delete_alias
        what = "delete the alias"
        steps.append(
            delete_step(
                "lambda alias", f"{name}:{alias}", was, what, fn, FunctionName=name, Name=alias
            )
        )
    if state.reserved is not None:
        steps.append(_reserved_delete(lam, name, f"cap of {state.reserved}"))
    if state.function:
        versions = f"and its {len(state.versions)} published version(s)"
        what = f"delete Lambda function {name}"
        steps.append(
            delete_step(
                "lambda function", name, versions, what, lam.delete_function, FunctionName=name
            )
        )
    group = _log_group(ctx, cfg)
    if group:
        fn = ctx.client("logs").delete_log_group
        what = "delete the log group"
        steps.append(
            delete_step("log group", group, "the function's logs", what, fn, logGroupName=group)
        )
    return steps + iam.role_delete_steps(ctx, cfg)


def missing_endpoint_warning(ctx: AwsContext, cfg: DogclfConfig) -> str | None:
    """The function can deploy before the endpoint exists; what it will answer then."""
    endpoint = cfg.names.endpoint
    found = get_or_none(
        f"check endpoint {endpoint}",
        ctx.client("sagemaker").describe_endpoint,
        EndpointName=endpoint,
    )
    if found is not None:
        return None
    return (
        f"endpoint {endpoint} does not exist yet: the function answers 502 until "
        "`dogclf deploy` creates it"
    )
