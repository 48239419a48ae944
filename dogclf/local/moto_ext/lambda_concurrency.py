"""Provisioned concurrency and the account's concurrency quota for Lambda on moto 5.2.5,
which has neither.

Adds PutProvisionedConcurrencyConfig, GetProvisionedConcurrencyConfig,
DeleteProvisionedConcurrencyConfig and ListProvisionedConcurrencyConfigs on an alias or
published version. A config is READY at once (AWS takes minutes). As AWS does, $LATEST is
refused, and so is a count below 1 or above the function's reserved concurrency. Configs
live on the moto backend (so /moto-api/reset forgets them) and vanish with their alias or
function.

The account quota: every account/region has a concurrency limit (1000, as a normal
account; POST /moto-api/dogclf/lambda/concurrency {"limit": 10} or
set_lambda_concurrency_limit() sets another, e.g. a new account's 10). GetAccountSettings
(added) reports it and what is unreserved: the limit less every function's reserve, and less
the provisioned concurrency of functions without one. PutFunctionConcurrency (moto's,
overridden here first) and PutProvisionedConcurrencyConfig refuse, with AWS's code and
words, what would leave less unreserved than AWS keeps: 100, or the whole limit when it is
lower.
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import unquote

from dogclf.local.moto_ext import routes

_PC_PATH = (
    r"{0}/(?P<api_version>[^/]+)/functions/(?P<function_name>[\w_:%-]+)/provisioned-concurrency/?$"
)
_SETTINGS_PATH = r"{0}/(?P<api_version>[^/]+)/account-settings/?$"
LAMBDA_CONCURRENCY_PATH = "/moto-api/dogclf/lambda/concurrency"
DEFAULT_LIMIT = 1000  # an established account's "Concurrent executions" quota
UNRESERVED_MINIMUM = 100  # what PutFunctionConcurrency keeps unreserved (its documentation)
# AWS's words, {kind} being "ReservedConcurrentExecutions" (PutFunctionConcurrency) or
# "ConcurrentExecutions" (PutProvisionedConcurrencyConfig).
QUOTA_MESSAGE = (
    "Specified {kind} for function decreases account's UnreservedConcurrentExecution below "
    "its minimum value of [{minimum}]."
)
# Figures GetAccountSettings reports that dogclf never reaches (AWS's defaults, bytes).
CODE_LIMITS = {
    "TotalCodeSize": 80_530_636_800,
    "CodeSizeUnzipped": 262_144_000,
    "CodeSizeZipped": 52_428_800,
}


def set_lambda_concurrency_limit(
    emulator_url: str, limit: int, *, region: str = "us-east-1"
) -> None:
    """Client side of the quota route (tests, demo): the account's concurrency limit."""
    routes.post_json(emulator_url, LAMBDA_CONCURRENCY_PATH, {"limit": limit, "region": region})


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


def _live_configs(backend: Any, name: str) -> dict[str, dict[str, Any]]:
    """Configs of this function whose alias/version still exists (drop the others)."""
    from moto.awslambda.exceptions import LambdaClientError

    store = _store(backend)
    found = {}
    for (fn_name, qualifier), config in list(store.items()):
        if fn_name != name:
            continue
        try:
            backend.get_function(fn_name, qualifier)
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
    if reserved is None:
        had = int(_live_configs(self.backend, name).get(qualifier, {}).get(_REQUESTED, 0))
        _check_unreserved(self.backend, count - had, "ConcurrentExecutions")
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
    config = _live_configs(self.backend, name).get(qualifier)
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
        for qualifier, config in sorted(_live_configs(self.backend, name).items())
    ]
    return 200, {}, json.dumps({"ProvisionedConcurrencyConfigs": configs})


# ---------------------------------------------------------------- the account's quota

_REQUESTED = "RequestedProvisionedConcurrentExecutions"


def _limit(backend: Any) -> int:
    return int(backend.__dict__.get("_dogclf_concurrency_limit", DEFAULT_LIMIT))


def _drawn(backend: Any, fn: Any) -> int:
    """What one function takes from the pool: its reserve, else its provisioned configs."""
    if fn.reserved_concurrency is not None:
        return int(fn.reserved_concurrency)
    configs = _live_configs(backend, fn.function_name).values()
    return sum(int(config[_REQUESTED]) for config in configs)


def unreserved(backend: Any) -> int:
    return _limit(backend) - sum(_drawn(backend, fn) for fn in backend.list_functions())


def _check_unreserved(backend: Any, more: int, kind: str) -> None:
    """Refuse taking `more` from the pool when that leaves less than AWS keeps."""
    from moto.awslambda.exceptions import InvalidParameterValueException

    minimum = min(UNRESERVED_MINIMUM, _limit(backend))
    if more > 0 and unreserved(backend) - more < minimum:
        raise InvalidParameterValueException(QUOTA_MESSAGE.format(kind=kind, minimum=minimum))


def get_account_settings(self: Any) -> Any:
    functions = list(self.backend.list_functions())
    limits = {
        **CODE_LIMITS,
        "ConcurrentExecutions": _limit(self.backend),
        "UnreservedConcurrentExecutions": unreserved(self.backend),
    }
    usage = {
        "TotalCodeSize": sum(int(fn.code_size or 0) for fn in functions),
        "FunctionCount": len(functions),
    }
    return 200, {}, json.dumps({"AccountLimit": limits, "AccountUsage": usage})


def _quota_first(put: Any) -> Any:
    """moto's PutFunctionConcurrency, after the account's quota says yes."""

    @functools.wraps(put)
    def put_function_concurrency(self: Any) -> Any:
        fn = self.backend.get_function(unquote(self.path.rstrip("/").rsplit("/", 2)[-2]))
        want = int(self.json_body["ReservedConcurrentExecutions"])
        _check_unreserved(
            self.backend, want - _drawn(self.backend, fn), "ReservedConcurrentExecutions"
        )
        return put(self)

    return put_function_concurrency


def _set_limit(body: dict[str, Any], moto_url: str) -> routes.Response:
    from moto.awslambda.utils import get_backend

    limit = body.get("limit")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        return routes.reply(400, {"Error": 'POST {"limit": N} with N a positive integer'})
    get_backend(*routes.account_and_region(body)).__dict__["_dogclf_concurrency_limit"] = limit
    return routes.reply(200, {"status": "ok", "limit": limit})


def install() -> None:
    """Route .../provisioned-concurrency and /account-settings to moto's Lambda dispatcher,
    which calls these by their operation names; add the quota route."""
    from moto.awslambda import urls
    from moto.awslambda.responses import LambdaResponse

    urls.url_paths[_PC_PATH] = LambdaResponse.dispatch
    urls.url_paths[_SETTINGS_PATH] = LambdaResponse.dispatch
    for fn in (
        put_provisioned_concurrency_config,
        get_provisioned_concurrency_config,
        delete_provisioned_concurrency_config,
        list_provisioned_concurrency_configs,
        get_account_settings,
    ):
        setattr(LambdaResponse, fn.__name__, fn)
    LambdaResponse.put_function_concurrency = _quota_first(  # type: ignore[method-assign]
        LambdaResponse.put_function_concurrency
    )
    routes.add_post_route(LAMBDA_CONCURRENCY_PATH, 'POST {"limit": N}', _set_limit)
