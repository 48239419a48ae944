"""Serverless endpoints on moto 5.2.5: what moto accepts and AWS refuses.

moto already takes ServerlessConfig: CreateEndpointConfig checks MemorySizeInMB against the
six sizes, and the endpoint carries it as CurrentServerlessConfig / DesiredServerlessConfig
in DescribeEndpoint, as AWS answers. Its traffic is answered as a real-time endpoint's: by
what the model's image runs (dogclf/local/demo.py), whose environment holds the 4 MB cap.

What moto lacks, added here over sagemaker_lifecycle's UpdateEndpoint and moto's
CreateEndpointConfig:
- UpdateEndpoint from an instance-based endpoint to a serverless config fails with a
  ValidationException, as AWS documents ("you cannot convert your instance-based, real-time
  endpoint to a serverless endpoint ... you receive a ValidationError"); the message
  paraphrases AWS's, whose exact words are not published. Serverless -> real-time passes.
- CreateEndpointConfig refuses ProvisionedConcurrency above MaxConcurrency, and a serverless
  variant beside other variants (AWS: no multiple production variants on serverless).
"""

from __future__ import annotations

from typing import Any


def _serverless(variants: list[dict[str, Any]]) -> bool:
    return any(v.get("ServerlessConfig") for v in variants)


def refuse_conversion(backend: Any, endpoint_name: str, config_name: str) -> None:
    """Raise AWS's error when `config_name` would turn an instance-based endpoint serverless."""
    from moto.sagemaker.exceptions import ValidationError

    endpoint = backend.endpoints.get(endpoint_name)
    new = backend.endpoint_configs.get(config_name)
    old = backend.endpoint_configs.get(getattr(endpoint, "endpoint_config_name", ""))
    if endpoint is None or new is None or old is None:
        return  # the wrapped call raises AWS's not-found errors
    if _serverless(new.production_variants) and not _serverless(old.production_variants):
        raise ValidationError(
            message=f"Cannot update endpoint {endpoint_name} from an instance-based endpoint "
            f"config to the serverless endpoint config {config_name}. Create a new endpoint "
            "for serverless inference."
        )


def check_variants(variants: list[dict[str, Any]]) -> None:
    from moto.sagemaker.exceptions import ValidationError

    if not _serverless(variants):
        return
    if len(variants) > 1:
        raise ValidationError(
            message="Serverless endpoint configs support exactly one production variant."
        )
    config = variants[0]["ServerlessConfig"]
    provisioned, most = config.get("ProvisionedConcurrency"), config.get("MaxConcurrency")
    if provisioned is not None and most is not None and int(provisioned) > int(most):
        raise ValidationError(
            message=f"ProvisionedConcurrency ({provisioned}) must be less than or equal to "
            f"MaxConcurrency ({most})."
        )


def install() -> None:
    """After sagemaker_lifecycle, whose UpdateEndpoint this wraps."""
    from moto.sagemaker.models import SageMakerModelBackend

    update = SageMakerModelBackend.update_endpoint  # type: ignore[attr-defined]
    create_config = SageMakerModelBackend.create_endpoint_config

    def update_endpoint(self: Any, endpoint_name: str, config_name: str, *args: Any) -> Any:
        refuse_conversion(self, endpoint_name, config_name)
        return update(self, endpoint_name, config_name, *args)

    def create_endpoint_config(self: Any, **kwargs: Any) -> Any:  # moto passes keywords
        check_variants(list(kwargs.get("production_variants") or []))
        return create_config(self, **kwargs)

    SageMakerModelBackend.update_endpoint = update_endpoint  # type: ignore[attr-defined]
    SageMakerModelBackend.create_endpoint_config = create_endpoint_config  # type: ignore[method-assign,assignment]
