"""A flaky AWS: throttling, 500/503 and IAM eventual consistency, injected at a set rate.

A WSGI middleware around the moto server's app (start_emulator wraps it), so every signed
AWS request passes here first. Each one, by a seeded hash of the request and how often the
same request was seen (reproducible whatever the threads' order), may get:

- `throttle`: the service's own throttling answer (S3 `SlowDown` 503, Lambda
  `TooManyRequestsException` 429, IAM/STS `Throttling`, else `ThrottlingException`);
- `500` / `503`: an internal error / service unavailable, before moto sees the request;
- `lost`: (mutating requests, at `after_rate`) moto applies the request, then the answer
  is replaced by a 500, as when AWS loses a response: the retry finds what it made;
- `iam-propagation`: for `role_delay_s` after CreateRole, CreateFunction / CreateModel /
  CreateTrainingJob naming that role get AWS's "cannot assume the role" answer.

Errors are in each service's wire protocol (JSON `__type` + `x-amzn-ErrorType`, query
`<ErrorResponse>`, S3 `<Error>`) so botocore parses the code as from AWS. Never injected:
/moto-api routes, unsigned requests, and the emulator's own clients (their User-Agent
carries dogclf.aws.session.INTERNAL_AGENT). Off until configured: `Emulator.set_faults()`
or POST /moto-api/dogclf/faults {"rate": 0.05, "seed": 1, ...}; POST {} answers the
settings and the counts by kind.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from dogclf.aws.session import INTERNAL_AGENT
from dogclf.local.moto_ext import routes

FAULTS_PATH = "/moto-api/dogclf/faults"
KINDS = ("throttle", "500", "503", "lost", "iam-propagation")
READ_PREFIXES = ("Get", "List", "Describe", "Head", "Search")

# service signing name -> (code, HTTP status, message) per kind; "" = any other service.
THROTTLE = {
    "s3": ("SlowDown", 503, "Please reduce your request rate."),
    "lambda": ("TooManyRequestsException", 429, "Rate exceeded"),
    "iam": ("Throttling", 400, "Rate exceeded"),
    "sts": ("Throttling", 400, "Rate exceeded"),
    "": ("ThrottlingException", 400, "Rate exceeded"),
}
INTERNAL = {
    "s3": ("InternalError", 500, "We encountered an internal error. Please try again."),
    "lambda": ("ServiceException", 500, "An internal error occurred."),
    "iam": ("ServiceFailure", 500, "Request processing has failed due to an internal error."),
    "": ("InternalFailure", 500, "The request processing has failed because of an unknown error."),
}
UNAVAILABLE = {
    "s3": ("ServiceUnavailable", 503, "Please reduce your request rate."),
    "": ("ServiceUnavailable", 503, "The service is unavailable. Please try again later."),
}
# AWS's words while a new role has not propagated (Lambda; SageMaker).
LAMBDA_ROLE_MESSAGE = "The role defined for the function cannot be assumed by Lambda."
SAGEMAKER_ROLE_MESSAGE = (
    "Could not assume role {role}. Please ensure that the role exists and allows principal "
    "'sagemaker.amazonaws.com' to assume the role."
)
ROLE_USERS = {"CreateFunction", "CreateModel", "CreateTrainingJob"}
QUERY_SERVICES = {"iam", "sts"}  # query protocol (XML errors); s3 has its own XML

StartResponse = Callable[..., Any]
Wsgi = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass
class FaultSettings:
    rate: float = 0.0  # share of requests answered with throttle / 500 / 503
    after_rate: float = 0.0  # share of mutating requests applied, then answered 500
    role_delay_s: float = 0.0  # a new role is not assumable for this long
    seed: int = 0
    kinds: tuple[str, ...] = ("throttle", "500", "503")
    operations: tuple[str, ...] = ()  # only these operations (e.g. "CreateRole"); () = all
    max_faults: int = 0  # stop after this many; 0 = no limit


@dataclass
class _Request:
    service: str
    operation: str
    method: str
    path: str
    body: bytes

    @property
    def mutating(self) -> bool:
        if self.operation:
            return not self.operation.startswith(READ_PREFIXES)
        return self.method not in ("GET", "HEAD")


class FaultInjector:
    """The middleware; `settings` and `counts` are read and set through FAULTS_PATH."""

    def __init__(self, app: Wsgi) -> None:
        self.app = app
        self.settings = FaultSettings()
        self.counts: Counter[str] = Counter()
        self.detail: Counter[str] = Counter()  # "kind service:Operation"
        self._seen: Counter[str] = Counter()
        self._roles: dict[str, float] = {}  # role name -> when CreateRole answered
        self._lock = threading.Lock()

    def configure(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if body:
                known = {k: v for k, v in body.items() if k in asdict(FaultSettings())}
                for key in ("kinds", "operations"):
                    if key in known:
                        known[key] = tuple(known[key])
                self.settings = FaultSettings(**known)
                self.counts.clear()
                self.detail.clear()
                self._seen.clear()
                self._roles.clear()
            return {
                "settings": asdict(self.settings),
                "counts": dict(self.counts),
                "detail": dict(self.detail),
            }

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self._active(environ):
            return self.app(environ, start_response)
        request = _read_request(environ)
        kind = self._choose(request)
        if kind == "lost":  # moto applies it; the answer is dropped
            status: list[str] = []
            answer = self.app(environ, _recording(status, lambda *args, **kwargs: None))
            self._note_role(request, status)
            for _ in answer:
                pass
            getattr(answer, "close", lambda: None)()
        if kind:
            with self._lock:
                self.counts[kind] += 1
                self.detail[f"{kind} {request.service}:{request.operation or request.method}"] += 1
            return _answer(start_response, request, kind)
        status = []
        answer = self.app(environ, _recording(status, start_response))
        self._note_role(request, status)
        return answer

    def _active(self, environ: dict[str, Any]) -> bool:
        s = self.settings
        return (
            (s.rate > 0 or s.after_rate > 0 or s.role_delay_s > 0)
            and not environ.get("PATH_INFO", "").startswith("/moto-api")
            and "AWS4-HMAC-SHA256" in environ.get("HTTP_AUTHORIZATION", "")
            and INTERNAL_AGENT not in environ.get("HTTP_USER_AGENT", "")
        )

    def _choose(self, request: _Request) -> str:
        """The fault for this request, or "": seeded by the request and its repeat count."""
        s = self.settings
        if s.operations and request.operation not in s.operations:
            return ""
        if s.max_faults and sum(self.counts.values()) >= s.max_faults:
            return ""
        if self._role_not_ready(request):
            return "iam-propagation"
        key = f"{request.service}|{request.operation}|{request.method}|{request.path}|"
        key += hashlib.sha256(request.body).hexdigest()
        with self._lock:
            self._seen[key] += 1
            nth = self._seen[key]
        roll = _uniform(f"{s.seed}|{key}|{nth}")
        if roll < s.rate and s.kinds:
            return s.kinds[int(_uniform(f"kind|{key}|{nth}") * len(s.kinds))]
        if request.mutating and roll < s.rate + s.after_rate:
            return "lost"
        return ""

    def _role_not_ready(self, request: _Request) -> bool:
        if request.operation not in ROLE_USERS or not self._roles:
            return False
        role = _role_in(request)
        created = self._roles.get(role.rsplit("/", 1)[-1]) if role else None
        return created is not None and time.monotonic() - created < self.settings.role_delay_s

    def _note_role(self, request: _Request, status: list[str]) -> None:
        """A role CreateRole just made: not assumable for `role_delay_s` from now."""
        if request.operation != "CreateRole" or not status or not status[0].startswith("200"):
            return
        form = urllib.parse.parse_qs(request.body.decode("utf-8", "replace"))
        with self._lock:
            for name in form.get("RoleName", []):
                self._roles[name] = time.monotonic()


def _recording(status: list[str], start_response: StartResponse) -> StartResponse:
    """start_response that also keeps the status line."""

    def recording(code: str, headers: Any, *rest: Any) -> Any:
        status.append(code)
        return start_response(code, headers, *rest)

    return recording


def _uniform(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:13], 16) / 16**13


def _read_request(environ: dict[str, Any]) -> _Request:
    """The parts of a request the injector decides on; the body is put back for moto."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    body = stream.read(length) if length else stream.read() if _terminated(environ) else b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    auth = environ.get("HTTP_AUTHORIZATION", "")
    scope = auth.split("Credential=", 1)[-1].split(",", 1)[0].split("/")
    service = scope[3] if len(scope) > 3 else ""
    operation = environ.get("HTTP_X_AMZ_TARGET", "").rsplit(".", 1)[-1]
    if not operation and service in QUERY_SERVICES:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        form.update(urllib.parse.parse_qs(environ.get("QUERY_STRING", "")))
        operation = (form.get("Action") or [""])[0]
    if not operation:
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if "HTTP_X_AMZ_COPY_SOURCE" in environ:  # S3's CopyObject / UploadPartCopy
            query.setdefault("x-amz-copy-source", [])
        operation = rest_operation(
            service, environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), set(query)
        )
    return _Request(
        service,
        operation,
        environ["REQUEST_METHOD"],
        environ.get("PATH_INFO", ""),
        body,
    )


# A REST route from botocore's model: method, path regex, query keys it needs, score, name.
_Route = tuple[str, re.Pattern[str], frozenset[str], int, str]


def rest_operation(service: str, method: str, path: str, query: set[str]) -> str:
    """The operation a REST (S3, Lambda) request is, from botocore's model of the service:
    the most specific requestUri that matches; "" when none does."""
    best: tuple[int, str] = (-1, "")
    for verb, pattern, needs, score, name in _routes(service):
        if verb == method and needs <= query and pattern.fullmatch(path) and score > best[0]:
            best = (score, name)
    return best[1]


@functools.cache
def _routes(service: str) -> list[_Route]:
    import botocore.session

    try:
        model = botocore.session.get_session().get_service_model(service)
    except Exception:  # not a service botocore knows by this signing name
        return []
    routes_: list[_Route] = []
    for name in model.operation_names:
        http = model.operation_model(name).http
        uri_path, _, uri_query = http.get("requestUri", "/").partition("?")
        needs = frozenset(
            k.split("=", 1)[0] for k in uri_query.split("&") if k and not k.startswith("x-id")
        ) | ({"x-amz-copy-source"} if "Copy" in name and service == "s3" else set())
        parts = re.split(r"(\{[^}]+\})", uri_path)
        regex = "".join(
            (".+" if p.endswith("+}") else "[^/]+") if p.startswith("{") else re.escape(p)
            for p in parts
        )
        literal = sum(len(p) for p in parts if not p.startswith("{"))
        routes_.append(
            (
                http.get("method", "POST"),
                re.compile(regex + "/?"),
                needs,
                100 * len(needs) + literal,
                name,
            )
        )
    return routes_


def _terminated(environ: dict[str, Any]) -> bool:
    return bool(environ.get("wsgi.input_terminated"))


def _role_in(request: _Request) -> str:
    try:
        doc = json.loads(request.body or b"{}")
    except ValueError:
        return ""
    return str(doc.get("Role") or doc.get("RoleArn") or doc.get("ExecutionRoleArn") or "")


def _answer(start_response: StartResponse, request: _Request, kind: str) -> Iterable[bytes]:
    code, status, message = _error_for(request, kind)
    service = request.service
    request_id = hashlib.sha256(f"{request.path}{time.time()}".encode()).hexdigest()[:32]
    if service == "s3":
        body = (
            f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
        )
        headers = [("Content-Type", "application/xml")]
    elif service in QUERY_SERVICES:
        body = (
            f"<ErrorResponse><Error><Type>{'Receiver' if status >= 500 else 'Sender'}</Type>"
            f"<Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        headers = [("Content-Type", "text/xml")]
    else:  # JSON and REST-JSON protocols: botocore reads the header or __type
        body = json.dumps({"__type": code, "message": message, "Message": message})
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)]
    headers.append(("x-amzn-RequestId", request_id))
    data = b"" if request.method == "HEAD" else body.encode()
    headers.append(("Content-Length", str(len(data))))
    start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
    return [data]


_REASONS = {
    400: "Bad Request",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _error_for(request: _Request, kind: str) -> tuple[str, int, str]:
    service = request.service
    if kind == "throttle":
        return THROTTLE.get(service, THROTTLE[""])
    if kind == "503":
        return UNAVAILABLE.get(service, UNAVAILABLE[""])
    if kind == "iam-propagation":
        if service == "lambda":
            return "InvalidParameterValueException", 400, LAMBDA_ROLE_MESSAGE
        return "ValidationException", 400, SAGEMAKER_ROLE_MESSAGE.format(role=_role_in(request))
    return INTERNAL.get(service, INTERNAL[""])  # "500" and "lost"


# ------------------------------------------------------------------ wiring and clients

_injectors: dict[str, FaultInjector] = {}  # by the emulator's URL


def wrap_server(server: Any, url: str) -> FaultInjector:
    """Put a FaultInjector around a started ThreadedMotoServer's app (werkzeug reads
    `server.app` per request, so this holds from the next request on)."""
    injector = FaultInjector(server._server.app)
    server._server.app = injector
    _injectors[url] = injector
    return injector


def _route(body: dict[str, Any], url: str) -> routes.Response:
    injector = _injectors.get(url)
    if injector is None:
        return routes.reply(404, {"Error": "this server has no fault injector"})
    return routes.reply(200, injector.configure(body))


def fault_state(emulator_url: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Client side of FAULTS_PATH: set the settings (if given); the settings and counts."""
    req = urllib.request.Request(
        emulator_url + FAULTS_PATH, data=json.dumps(settings or {}).encode(), method="POST"
    )
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:
        state: dict[str, Any] = json.loads(resp.read())
    return state


def install() -> None:
    routes.add_post_route(FAULTS_PATH, 'POST {"rate": 0.05, "seed": 1, ...} or {}', _route)
