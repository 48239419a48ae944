"""Lambda function URLs that can be called, and the resource policy they check, on moto 5.2.5.

moto stores a function URL's configuration but serves no URL, and its resource policy is
not AWS's: an alias's statements land on the version the alias points at (and stay behind
when it moves), RemovePermission ignores the Qualifier, and a repeated StatementId is
accepted. This module:

- overrides AddPermission, GetPolicy and RemovePermission with one policy per function and
  qualifier (alias or version), as on AWS: statements in AWS's shape (Condition
  `StringEquals lambda:FunctionUrlAuthType`, `Bool lambda:InvokedViaFunctionUrl`, ...),
  409 ResourceConflictException for a repeated Sid, 404 for a missing one or an empty
  policy; the policy goes with its function, and with its alias (DeleteAlias);
- notes the Qualifier CreateFunctionUrlConfig was given (moto drops it);
- serves each URL at `<emulator>/moto-api/dogclf/lambda-url/<url id>/<path>`
  (emulated_function_url() turns a FunctionUrl into that address). A call is checked as
  Lambda checks it: AuthType NONE needs statements letting principal "*" do both
  lambda:InvokeFunctionUrl and lambda:InvokeFunction (AWS's rule for URLs made since
  October 2025), AWS_IAM needs a SigV4 Authorization header: only its presence is
  checked here, not the signature nor the caller's IAM policy. A refusal is AWS's 403
  `{"Message":"Forbidden"}`. A call that passes runs the function through Invoke on the
  alias (lambda_runtime.py's awslambdaric runtime once enabled) with a payload format 2.0
  event, and its answer becomes the HTTP response as Lambda maps it.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

FUNCTION_URL_PATH = "/moto-api/dogclf/lambda-url"
# A URL's answer: status, headers, body (bytes: a function may answer binary, base64'd).
UrlResponse = tuple[int, dict[str, str], str | bytes]
_URL_ROUTE = "{0}" + FUNCTION_URL_PATH + r"/(?P<url_id>[a-z0-9]+)(?P<rest>/.*)"
FORBIDDEN: tuple[int, dict[str, str], str] = (
    403,
    {"x-amzn-ErrorType": "AccessDeniedException"},
    '{"Message":"Forbidden"}',
)
# Content types whose body a function URL passes as text; anything else goes base64.
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")


def emulated_function_url(emulator_url: str, function_url: str) -> str:
    """Where the emulator serves a FunctionUrl (https://<id>.lambda-url.<region>.on.aws/)."""
    url_id = urlsplit(function_url).hostname.split(".", 1)[0]  # type: ignore[union-attr]
    return f"{emulator_url.rstrip('/')}{FUNCTION_URL_PATH}/{url_id}/"


# ---------------------------------------------------------------- the resource policy


def _error(status: int, code: str, message: str) -> Exception:
    from moto.awslambda.exceptions import LambdaClientError

    error = LambdaClientError(code, message)
    error.code = status
    return error


def _policies(fn: Any) -> dict[str, list[dict[str, Any]]]:
    """Statements by qualifier ("" = the function), kept on the function's $LATEST object
    so they go with the function."""
    found: dict[str, list[dict[str, Any]]] = fn.__dict__.setdefault("_dogclf_policies", {})
    return found


def _target(response: Any, name_at: int) -> tuple[Any, str]:
    """The function's $LATEST object and the request's qualifier ("" when none); a 404 for
    a function, alias or version that does not exist."""
    path = urlsplit(response.path).path.rstrip("/")
    name = unquote(path.split("/")[name_at])
    qualifier = response.querystring.get("Qualifier", [""])[0]
    response.backend.get_function(name, qualifier or None)  # ResourceNotFound if absent
    return response.backend.get_function(name), qualifier


def _principal(value: str) -> Any:
    if value == "*":
        return "*"
    if value.endswith(".amazonaws.com"):
        return {"Service": value}
    return {"AWS": f"arn:aws:iam::{value}:root" if value.isdigit() else value}


def _statement(body: dict[str, Any], resource: str) -> dict[str, Any]:
    """AddPermission's request as the statement AWS writes (GetPolicy shows it so)."""
    conditions: dict[str, dict[str, str]] = {}
    for key, (operator, name) in {
        "FunctionUrlAuthType": ("StringEquals", "lambda:FunctionUrlAuthType"),
        "SourceAccount": ("StringEquals", "AWS:SourceAccount"),
        "PrincipalOrgID": ("StringEquals", "aws:PrincipalOrgID"),
        "SourceArn": ("ArnLike", "AWS:SourceArn"),
    }.items():
        if body.get(key):
            conditions.setdefault(operator, {})[name] = str(body[key])
    if body.get("InvokedViaFunctionUrl"):
        conditions.setdefault("Bool", {})["lambda:InvokedViaFunctionUrl"] = "true"
    statement = {
        "Sid": body["StatementId"],
        "Effect": "Allow",
        "Principal": _principal(str(body["Principal"])),
        "Action": body["Action"],
        "Resource": resource,
    }
    return {**statement, "Condition": conditions} if conditions else statement


def add_permission(self: Any) -> Any:
    fn, qualifier = _target(self, -2)
    body = json.loads(self.body)
    statements = _policies(fn).setdefault(qualifier, [])
    if any(s["Sid"] == body["StatementId"] for s in statements):
        raise _error(
            409,
            "ResourceConflictException",
            f"The statement id ({body['StatementId']}) provided already exists. Please "
            "specify a new statement id, or remove the existing statement.",
        )
    resource = fn.function_arn + (f":{qualifier}" if qualifier else "")
    statement = _statement(body, resource)
    statements.append(statement)
    return 201, {"status": 201}, json.dumps({"Statement": json.dumps(statement)})


def get_policy(self: Any) -> Any:
    fn, qualifier = _target(self, -2)
    statements = _policies(fn).get(qualifier)
    if not statements:
        raise _error(404, "ResourceNotFoundException", "The resource you requested does not exist.")
    policy = {"Version": "2012-10-17", "Id": "default", "Statement": statements}
    revision = str(uuid.uuid5(uuid.NAMESPACE_OID, json.dumps(policy)))
    return 200, {}, json.dumps({"Policy": json.dumps(policy), "RevisionId": revision})


def remove_permission(self: Any) -> Any:
    fn, qualifier = _target(self, -3)
    sid = unquote(urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1])
    statements = _policies(fn).get(qualifier, [])
    kept = [s for s in statements if s["Sid"] != sid]
    if len(kept) == len(statements):
        raise _error(
            404, "ResourceNotFoundException", f"Statement {sid} is not found in resource policy."
        )
    _policies(fn)[qualifier] = kept
    return 204, {"status": 204}, ""


def _forget_alias_policy(delete_alias: Any) -> Any:
    def wrapped(self: Any) -> Any:
        name = unquote(self.path.rsplit("/")[-3])
        alias = unquote(self.path.rsplit("/", 2)[-1])
        answer = delete_alias(self)
        _policies(self.backend.get_function(name)).pop(alias, None)
        return answer

    return wrapped


def _keep_url_qualifier(create: Any) -> Any:
    """moto's CreateFunctionUrlConfig, then note which alias the URL is for."""

    def wrapped(self: Any) -> Any:
        answer = create(self)
        name = unquote(self.path.rstrip("/").rsplit("/", 2)[-2])
        config = self.backend.get_function_url_config(name)
        config.__dict__["_dogclf_qualifier"] = self.querystring.get("Qualifier", [None])[0]
        return answer

    return wrapped


# ---------------------------------------------------------------- calling a URL


def _find_url(url_id: str) -> tuple[Any, Any, Any] | None:
    """(backend, $LATEST function, url config) of the URL with this id, in any account."""
    from moto.awslambda.utils import get_backend
    from moto.awslambda_simple.models import lambda_simple_backends

    for account_id in list(lambda_simple_backends.keys()):
        for region in list(lambda_simple_backends[account_id].keys()):
            backend = get_backend(account_id, region)
            for fn in backend.list_functions():
                config = fn.url_config
                if config is not None and str(urlsplit(config.url).hostname).startswith(
                    url_id + "."
                ):
                    return backend, fn, config
    return None


def _allows(statements: list[dict[str, Any]], action: str, condition: tuple[str, str]) -> bool:
    """A statement lets anyone do `action`, unconditionally or under `condition` only."""
    for s in statements:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        if s.get("Effect") != "Allow" or s.get("Principal") not in ("*", {"AWS": "*"}):
            continue
        if not {action, "lambda:*", "*"} & set(actions):
            continue
        keys = {k: v for values in (s.get("Condition") or {}).values() for k, v in values.items()}
        if not keys or keys == dict([condition]):
            return True
    return False


def _authorized(fn: Any, config: Any, qualifier: str, headers: Any) -> bool:
    if config.config.get("AuthType") == "AWS_IAM":
        # SigV4's presence only: the signature and the caller's policy are not checked.
        return str(headers.get("Authorization", "")).startswith("AWS4-HMAC-SHA256 ")
    statements = _policies(fn).get(qualifier, [])
    return _allows(
        statements, "lambda:InvokeFunctionUrl", ("lambda:FunctionUrlAuthType", "NONE")
    ) and _allows(statements, "lambda:InvokeFunction", ("lambda:InvokedViaFunctionUrl", "true"))


def _event(request: Any, url_id: str, host: str, rest: str) -> dict[str, Any]:
    """The payload format 2.0 event Lambda hands a function behind its URL."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    content_type = headers.get("content-type", "")
    data: bytes = request.get_data()
    text = content_type.startswith(TEXT_TYPES)
    query = urlsplit(request.url).query
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": rest,
        "rawQueryString": query,
        "headers": {**headers, "host": host},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": url_id,
            "domainName": host,
            "domainPrefix": url_id,
            "http": {
                "method": request.method,
                "path": rest,
                "protocol": "HTTP/1.1",
                "sourceIp": request.remote_addr or "127.0.0.1",
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": bool(data) and not text,
    }
    if query:
        event["queryStringParameters"] = dict(parse_qsl(query, keep_blank_values=True))
    if data:
        event["body"] = data.decode() if text else base64.b64encode(data).decode()
    return event


def _http_answer(payload: bytes, errored: bool) -> UrlResponse:
    """The function's answer as the URL's HTTP response (Lambda's response format 2.0)."""
    if errored:
        return 502, {"Content-Type": "application/json"}, '{"Message":"Internal Server Error"}'
    try:
        answer = json.loads(payload or b"null")
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or "statusCode" not in answer:
        return 200, {"Content-Type": "application/json"}, payload.decode()
    body: str | bytes = answer.get("body") or ""
    if answer.get("isBase64Encoded"):
        body = base64.b64decode(body)
    headers = {str(k): str(v) for k, v in (answer.get("headers") or {}).items()}
    return int(answer["statusCode"]), headers, body


def serve_url(request: Any, full_url: str, headers: Any) -> UrlResponse:
    path = urlsplit(full_url).path
    url_id, _, rest = path[len(FUNCTION_URL_PATH) + 1 :].partition("/")
    found = _find_url(url_id)
    if found is None:
        return 404, {}, '{"Message":"Not Found"}'
    backend, fn, config = found
    qualifier = config.__dict__.get("_dogclf_qualifier") or ""
    if not _authorized(fn, config, qualifier, headers):
        return FORBIDDEN
    host = urlsplit(config.url).hostname
    event = _event(request, url_id, host, "/" + rest)
    response_headers: dict[str, str] = {}
    payload = backend.invoke(
        fn.function_name, qualifier or None, json.dumps(event), {}, response_headers
    )
    data = payload if isinstance(payload, bytes) else str(payload).encode()
    return _http_answer(data, "x-amz-function-error" in response_headers)


def install() -> None:
    from moto.awslambda.responses import LambdaResponse
    from moto.moto_api._internal import urls

    for fn in (add_permission, get_policy, remove_permission):
        setattr(LambdaResponse, fn.__name__, fn)
    LambdaResponse.delete_alias = _forget_alias_policy(  # type: ignore[method-assign]
        LambdaResponse.delete_alias
    )
    LambdaResponse.create_function_url_config = _keep_url_qualifier(  # type: ignore[method-assign]
        LambdaResponse.create_function_url_config
    )
    urls.url_paths[_URL_ROUTE] = serve_url
