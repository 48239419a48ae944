"""What every AWS command does the same way: show the plan, stop on --dry-run, need a role."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dogclf import render
from dogclf.errors import ConfigError
from dogclf.plan import Plan, render_plan

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig


def show_plan(plan: Plan, *, dry_run: bool, as_json: bool, **extra: Any) -> bool:
    """Print the plan on stderr; under --dry-run also the result (JSON) and return True."""
    render_plan(plan)
    if not dry_run:
        return False
    if as_json:
        render.print_json({"dry_run": True, "plan": plan.as_dict(), **extra})
    else:
        render.note("dry run: nothing was changed")
    return True


def require_role(cfg: DogclfConfig) -> str:
    if not cfg.aws.role_arn:
        raise ConfigError(
            "aws.role_arn is not set: SageMaker needs an execution role",
            'set [aws] role_arn = "arn:aws:iam::<account>:role/<name>" in dogclf.toml '
            "(a role SageMaker can assume, with access to the bucket)",
        )
    return cfg.aws.role_arn


def tag_list(cfg: DogclfConfig) -> list[dict[str, str]]:
    """cfg.tags in the [{"Key", "Value"}] form SageMaker and S3 take."""
    return [{"Key": k, "Value": v} for k, v in sorted(cfg.tags.items())]
