"""TLS-only S3 bucket policy statements, which moto 5.2.5 reads as "deny everything".

moto 5.2.5 evaluates bucket policies without their conditions, so the standard TLS-only
statement (Deny when aws:SecureTransport is false) denies every request. The emulator stands
in for AWS's HTTPS endpoint, so this module overrides moto's FakeBucket.get_permission to
leave such statements out; every other statement is evaluated by moto as before, and a
bucket whose policy has no such statement is untouched.
"""

from __future__ import annotations

import json
from typing import Any


def _tls_only_statement(statement: dict[str, Any]) -> bool:
    condition = statement.get("Condition") or {}
    return statement.get("Effect") == "Deny" and condition == {
        "Bool": {"aws:SecureTransport": "false"}
    }


def install() -> None:
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    original = FakeBucket.get_permission

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if self.policy is None:
            return original(self, action, resource)
        doc = json.loads(self.policy)
        statements = doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]
        kept = [s for s in statements if not _tls_only_statement(s)]
        if len(kept) == len(statements):
            return original(self, action, resource)
        if not kept:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps({**doc, "Statement": kept})).is_action_permitted(
            action, resource
        )

    FakeBucket.get_permission = get_permission  # type: ignore[method-assign]
