"""Provisioned concurrency for Lambda on moto 5.2.5, which has none.

Adds PutProvisionedConcurrencyConfig, GetProvisionedConcurrencyConfig,
DeleteProvisionedConcurrencyConfig and ListProvisionedConcurrencyConfigs on an alias or
published version. A config is READY at once (AWS takes minutes). As AWS does, $LATEST is
refused, and so is a count below 1 or above the function's reserved concurrency (moto's own
PutFunctionConcurrency, unchanged, sets that). Configs live on the moto backend (so
/moto-api/reset forgets them) and vanish with their alias or function.
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import unquote

_PC_PATH = (
    r"{0}/(?P<api_version>[^/]+)/functions/(?P<function_name>[\w_:%-]+)/provisioned-concurrency/?$"
)


def _store(backend: Any) -> dict[tuple[str, str], dict[str, Any]]:
    store: dict[tuple[str, str], dict[str, Any]] = backend.__dict__.setdefault(
        "_dogclf_provisioned", {}
    )
    return store


@functools.cache
def _config_not_found() -> type[Exception]:
    """AWS's 404 for a qualifier without a config (a class made once, moto imported late)."""
    from moto.awslambda.exceptions import LambdaClientError

    class ConfigNotFound(LambdaClientError):
        code = 404

        def __init__(self) -> None:
            super().__init__(
                "ProvisionedConcurrencyConfigNotFoundException",
                "No Provisioned Concurrency Config found for this function",
            )

    return ConfigNotFound


def _function_name(response: Any) -> str:
    return unquote(response.path.rstrip("/").rsplit("/", 2)[-2])


def _target(response: Any) -> tuple[str, str]:
    """(function name, qualifier) of the request; refuses $LATEST, 404s an unknown one."""
    from moto.awslambda.exceptions import InvalidParameterValueException

    name = _function_name(response)
    qualifier = response.querystring.get("Qualifier", [None])[0]
    if not qualifier or qualifier == "$LATEST":
        raise InvalidParameterValueException(
            "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
        )
    response.backend.get_function(name, qualifier)  # ResourceNotFound if absent
    return name, qualifier


def _live_configs(response: Any, name: str) -> dict[str, dict[str, Any]]:
    """Configs of this function whose alias/version still exists (drop the others)."""
    from moto.awslambda.exceptions import LambdaClientError

    store = _store(response.backend)
    found = {}
    for (fn_name, qualifier), config in list(store.items()):
        if fn_name != name:
            continue
        try:
            response.backend.get_function(fn_name, qualifier)
        except LambdaClientError:
            del store[(fn_name, qualifier)]
            continue
        found[qualifier] = config
    return found


def put_provisioned_concurrency_config(self: Any) -> Any:
    from moto.awslambda.exceptions import InvalidParameterValueException
    from moto.core.utils import utcnow

    name, qualifier = _target(self)
    count = int(self.json_body["ProvisionedConcurrentExecutions"])
    reserved = self.backend.get_function(name).reserved_concurrency
    if count < 1:
        raise InvalidParameterValueException("ProvisionedConcurrentExecutions must be >= 1")
    if reserved is not None and count > int(reserved):
        raise InvalidParameterValueException(
            f"Requested Provisioned Concurrency ({count}) exceeds the function's reserved "
            f"concurrency ({reserved})."
        )
    config = {
        "RequestedProvisionedConcurrentExecutions": count,
        "AllocatedProvisionedConcurrentExecutions": count,
        "AvailableProvisionedConcurrentExecutions": count,
        "Status": "READY",
        "LastModified": utcnow().strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
    }
    _store(self.backend)[(name, qualifier)] = config
    return 202, {"status": 202}, json.dumps(config)


def get_provisioned_concurrency_config(self: Any) -> Any:
    name, qualifier = _target(self)
    config = _live_configs(self, name).get(qualifier)
    if config is None:
        raise _config_not_found()()
    return 200, {}, json.dumps(config)


def delete_provisioned_concurrency_config(self: Any) -> Any:
    name, qualifier = _target(self)
    _store(self.backend).pop((name, qualifier), None)
    return 204, {"status": 204}, ""


def list_provisioned_concurrency_configs(self: Any) -> Any:
    name = _function_name(self)
    function = self.backend.get_function(name)
    configs = [
        {"FunctionArn": f"{function.function_arn}:{qualifier}", **config}
        for qualifier, config in sorted(_live_configs(self, name).items())
    ]
    return 200, {}, json.dumps({"ProvisionedConcurrencyConfigs": configs})


def install() -> None:
    """Route .../provisioned-concurrency to moto's Lambda dispatcher, which calls these by
    their operation names."""
    from moto.awslambda import urls
    from moto.awslambda.responses import LambdaResponse

    urls.url_paths[_PC_PATH] = LambdaResponse.dispatch
    for fn in (
        put_provisioned_concurrency_config,
        get_provisioned_concurrency_config,
        delete_provisioned_concurrency_config,
        list_provisioned_concurrency_configs,
    ):
        setattr(LambdaResponse, fn.__name__, fn)
