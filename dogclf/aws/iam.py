"""The Lambda execution role: trusted by lambda.amazonaws.com, one least-privilege inline policy.

The policy allows exactly: sagemaker:InvokeEndpoint on this stage's endpoint, writing logs to
this function's log group, and (only with `lambda.s3_input`) s3:GetObject under the data
prefix. Anything else found on the role (managed policies, other inline policies) is planned
for removal, so the role holds what this module says and nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from dogclf import role_policy
from dogclf.aws.artifacts import parse_s3_uri
from dogclf.aws.session import (
    AwsContext,
    aws_errors,
    call,
    delete_step,
    get_or_none,
    tag_list,
)
from dogclf.plan import Action, Plan, Step

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig

POLICY_VERSION = "2012-10-17"


def trust_policy() -> dict[str, Any]:
    return role_policy.trust_policy("lambda.amazonaws.com")


def endpoint_arn(cfg: DogclfConfig, *, partition: str, region: str, account: str) -> str:
    # SageMaker stores endpoint ARNs lower-cased, and IAM compares them as written.
    return f"arn:{partition}:sagemaker:{region}:{account}:endpoint/{cfg.names.endpoint.lower()}"


def log_group_arn(cfg: DogclfConfig, *, partition: str, region: str, account: str) -> str:
    return f"arn:{partition}:logs:{region}:{account}:log-group:{cfg.names.log_group}"


def execution_policy(
    cfg: DogclfConfig, *, partition: str, region: str, account: str
) -> dict[str, Any]:
    """The whole inline policy document, built only from the config and the account."""
    where = {"partition": partition, "region": region, "account": account}
    group = log_group_arn(cfg, **where)
    statements: list[dict[str, Any]] = [
        {
            "Sid": "InvokeEndpoint",
            "Effect": "Allow",
            "Action": "sagemaker:InvokeEndpoint",
            "Resource": endpoint_arn(cfg, **where),
        },
        {
            "Sid": "CreateLogGroup",
            "Effect": "Allow",
            "Action": "logs:CreateLogGroup",
            "Resource": f"{group}:*",
        },
        {
            "Sid": "WriteLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"{group}:log-stream:*",
        },
    ]
    if cfg.lambda_.s3_input:
        bucket, key = parse_s3_uri(cfg.s3_prefix("data"))
        statements.append(
            {
                "Sid": "ReadInputImages",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"arn:{partition}:s3:::{bucket}/{key}/*",
            }
        )
    return {"Version": POLICY_VERSION, "Statement": statements}


def role_arn(ctx: AwsContext, cfg: DogclfConfig) -> str:
    return f"arn:{ctx.partition}:iam::{ctx.account_id}:role/{cfg.names.lambda_role}"


def desired_policy(ctx: AwsContext, cfg: DogclfConfig) -> dict[str, Any]:
    return execution_policy(cfg, partition=ctx.partition, region=ctx.region, account=ctx.account_id)


def plan_role(ctx: AwsContext, cfg: DogclfConfig, plan: Plan) -> str:
    """Add the role steps to `plan` (read-only calls only) and return the role's ARN."""
    iam = ctx.client("iam")
    name, policy_name = cfg.names.lambda_role, cfg.names.lambda_policy
    policy = desired_policy(ctx, cfg)
    role = get_or_none(f"read IAM role {name}", iam.get_role, RoleName=name)
    current_policy: dict[str, Any] | None = None
    inline: list[str] = []
    attached: list[dict[str, str]] = []
    if role is None:
        plan.add(
            Action.CREATE,
            "iam role",
            name,
            "execution role trusted by lambda.amazonaws.com",
            _bound(
                f"create IAM role {name}",
                iam.create_role,
                RoleName=name,
                AssumeRolePolicyDocument=_json(trust_policy()),
                Description=f"dogclf Lambda {cfg.names.lambda_function}: invoke one endpoint",
                Tags=tag_list(cfg),
            ),
        )
    else:
        _plan_role_update(plan, iam, cfg, role["Role"])
        current_policy = _inline_policy(iam, name, policy_name)
        inline, attached = _role_policies(iam, name)
    _plan_policy(plan, iam, cfg, current_policy, policy)
    plan.steps += [
        _delete_inline_step(iam, name, extra, "not part of the least-privilege role")
        for extra in inline
        if extra != policy_name
    ]
    plan.steps += [
        _detach_step(
            iam,
            name,
            managed["PolicyArn"],
            managed["PolicyName"],
            "detach managed policy: the inline policy is all the role needs",
        )
        for managed in attached
    ]
    return role_arn(ctx, cfg)


def _plan_policy(
    plan: Plan,
    iam: Any,
    cfg: DogclfConfig,
    current: dict[str, Any] | None,
    policy: dict[str, Any],
) -> None:
    name, policy_name = cfg.names.lambda_role, cfg.names.lambda_policy
    if current == policy:
        plan.add(Action.NOOP, "iam policy", policy_name, "least-privilege policy up to date")
        return
    plan.add(
        Action.CREATE if current is None else Action.UPDATE,
        "iam policy",
        policy_name,
        _policy_summary(policy),
        _bound(
            f"put inline policy {policy_name} on {name}",
            iam.put_role_policy,
            RoleName=name,
            PolicyName=policy_name,
            PolicyDocument=_json(policy),
        ),
    )


def _role_policies(iam: Any, name: str) -> tuple[list[str], list[dict[str, str]]]:
    """The role's inline policy names and its attached managed policies."""
    with aws_errors(f"list the policies of IAM role {name}"):
        inline = iam.list_role_policies(RoleName=name)["PolicyNames"]
        attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
    return list(inline), list(attached)


def _delete_inline_step(iam: Any, role: str, policy: str, message: str) -> Step:
    what = f"delete inline policy {policy}"
    fn = iam.delete_role_policy
    return delete_step("iam policy", policy, message, what, fn, RoleName=role, PolicyName=policy)


def _detach_step(iam: Any, role: str, arn: str, label: str, message: str) -> Step:
    what, fn = f"detach {arn}", iam.detach_role_policy
    return delete_step("iam attachment", label, message, what, fn, RoleName=role, PolicyArn=arn)


def _plan_role_update(plan: Plan, iam: Any, cfg: DogclfConfig, role: dict[str, Any]) -> None:
    name = role["RoleName"]
    changes: list[str] = []
    actions: list[Callable[[], Any]] = []
    if _as_doc(role.get("AssumeRolePolicyDocument")) != trust_policy():
        changes.append("trust only lambda.amazonaws.com")
        actions.append(
            lambda: call(
                f"update the trust policy of {name}",
                iam.update_assume_role_policy,
                RoleName=name,
                PolicyDocument=_json(trust_policy()),
            )
        )
    have = {t["Key"]: t["Value"] for t in role.get("Tags", [])}
    if any(have.get(k) != v for k, v in cfg.tags.items()):
        changes.append("tags")
        actions.append(
            lambda: call(f"tag IAM role {name}", iam.tag_role, RoleName=name, Tags=tag_list(cfg))
        )
    if not changes:
        plan.add(Action.NOOP, "iam role", name, "exists, trusted by lambda.amazonaws.com")
        return
    plan.add(
        Action.UPDATE,
        "iam role",
        name,
        "; ".join(changes),
        lambda: [action() for action in actions],
    )


def _inline_policy(iam: Any, role: str, policy_name: str) -> dict[str, Any] | None:
    found = get_or_none(
        f"read inline policy {policy_name}",
        iam.get_role_policy,
        RoleName=role,
        PolicyName=policy_name,
    )
    return None if found is None else _as_doc(found["PolicyDocument"])


def _as_doc(document: Any) -> Any:
    """IAM documents come back parsed by botocore, or as (URL-encoded) JSON text."""
    if isinstance(document, str):
        return json.loads(unquote(document))
    return document


def _json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2)


def _policy_summary(policy: dict[str, Any]) -> str:
    actions: list[str] = []
    for statement in policy["Statement"]:
        action = statement["Action"]
        actions += [action] if isinstance(action, str) else action
    return "allow only " + ", ".join(actions)


def _bound(what: str, fn: Callable[..., Any], **kwargs: Any) -> Callable[[], Any]:
    """A plan step's action: `fn(**kwargs)` with AWS errors translated."""
    return lambda: call(what, fn, **kwargs)


# ---------------------------------------------------------------- status / teardown


def describe_role(ctx: AwsContext, cfg: DogclfConfig) -> dict[str, Any] | None:
    """The role and its inline policy names, or None when it does not exist."""
    iam = ctx.client("iam")
    name = cfg.names.lambda_role
    role = get_or_none(f"read IAM role {name}", iam.get_role, RoleName=name)
    if role is None:
        return None
    inline, attached = _role_policies(iam, name)
    return {
        "name": name,
        "arn": role["Role"]["Arn"],
        "inline_policies": inline,
        "attached_policies": [p["PolicyArn"] for p in attached],
    }


def role_delete_steps(ctx: AwsContext, cfg: DogclfConfig) -> list[Step]:
    """Inline policies and attachments first: IAM refuses to delete a role that has any."""
    found = describe_role(ctx, cfg)
    if found is None:
        return []
    iam = ctx.client("iam")
    name = found["name"]
    steps = [
        _delete_inline_step(iam, name, policy, f"inline policy of {name}")
        for policy in found["inline_policies"]
    ]
    steps += [
        _detach_step(iam, name, arn, arn.rsplit("/", 1)[-1], f"detach from {name}")
        for arn in found["attached_policies"]
    ]
    what = f"delete IAM role {name}"
    steps.append(
        delete_step("iam role", name, "Lambda execution role", what, iam.delete_role, RoleName=name)
    )
    return steps
