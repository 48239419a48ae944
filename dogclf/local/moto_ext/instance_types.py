"""Endpoint instance types as AWS accepts them: botocore's ProductionVariantInstanceType enum.

moto 5.2.5 checks CreateEndpointConfig's InstanceType against a list of its own that ends
before ml.g5, ml.g6, ml.m6i, ml.c6i, ml.m7i..., so a config AWS accepts (every GPU type
`deploy` recommends today) failed in the rehearsal. The check is replaced by the service
model's enum, with moto's own wording for a value outside it.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def hosting_instance_types() -> frozenset[str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape: Any = model.shape_for("ProductionVariantInstanceType")  # a StringShape: .enum
    return frozenset(shape.enum)


def install() -> None:
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import FakeEndpointConfig

    def validate_instance_type(self: Any, instance_type: str) -> None:
        if instance_type not in hosting_instance_types():
            raise ValidationError(
                message=f"Value '{instance_type}' at 'instanceType' failed to satisfy "
                "constraint: Member must satisfy enum value set: ProductionVariantInstanceType"
            )

    FakeEndpointConfig.validate_instance_type = validate_instance_type  # type: ignore[method-assign]
