"""Plan, then apply: every mutating command first lists its steps from read-only calls.

`--dry-run` prints the plan and stops; a second run of the same command plans only no-ops.
Plain data and one loop: how a plan is shown is commands/plans.py's business.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    NOOP = "no-op"


@dataclass
class Step:
    action: Action
    resource: str  # kind of thing: "endpoint", "s3 object", "iam role"
    name: str  # which one
    message: str  # one line a person reads in the plan
    apply: Callable[[], Any] | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, str]:
        return {
            "action": str(self.action),
            "resource": self.resource,
            "name": self.name,
            "message": self.message,
        }


@dataclass
class StepResult:
    step: Step
    seconds: float
    result: Any = None


@dataclass
class Plan:
    title: str
    steps: list[Step] = field(default_factory=list)

    def add(
        self,
        action: Action,
        resource: str,
        name: str,
        message: str,
        apply: Callable[[], Any] | None = None,
    ) -> Step:
        step = Step(action, resource, name, message, apply)
        self.steps.append(step)
        return step

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.action is not Action.NOOP]

    @property
    def is_noop(self) -> bool:
        return not self.changes

    def counts(self) -> dict[str, int]:
        return {a.value: sum(1 for s in self.steps if s.action is a) for a in Action}

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "steps": [s.as_dict() for s in self.steps],
            "counts": self.counts(),
        }


def run_plan(
    plan: Plan,
    *,
    around: Callable[[Step, Callable[[], Any]], Any] | None = None,
    on_done: Callable[[StepResult], None] | None = None,
) -> list[StepResult]:
    """Run each changing step in order; a failure stops the plan where it is.

    `around(step, run)` wraps each call (a spinner), `on_done` hears of each result."""
    results = []
    for step in plan.steps:
        if step.action is Action.NOOP or step.apply is None:
            continue
        started = time.perf_counter()
        value = around(step, step.apply) if around else step.apply()
        result = StepResult(step, time.perf_counter() - started, value)
        results.append(result)
        if on_done:
            on_done(result)
    return results
