"""The HTTP side of `dogclf serve`: an ASGI app for uvicorn, and uvicorn's httptools protocol
(llhttp, Node's C parser) with the limits it lacks.

The event loop only routes, reads bodies and writes answers: parsing and decoding run on
the service's decode threads, forward passes on the batcher's workers, so /ping answers
while the model is saturated.

Timeouts (serving.* in dogclf.toml; docs/decisions.md):
  keep_alive_s     an idle connection, fresh or between requests, is closed after this
                   (uvicorn's timeout_keep_alive). Longer than the 60 s SageMaker's front end
                   may keep a connection idle, so the front end, not the container, closes
                   idle connections and never sends a request on one being closed.
  header_timeout_s from the first byte of a request to its last header (slow-loris);
                   the headers may be at most MAX_HEADER_BYTES (431 beyond).
  body_timeout_s   from the headers to the end of the body.
A connection over either gets `408` (headers) or is closed (body).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from dogclf.model import inference
from dogclf.serving.batching import Refused
from dogclf.units import MiB

if TYPE_CHECKING:
    from dogclf.serving.server import InferenceService

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

RUNTIME_PATH = re.compile(r"^/endpoints/([^/]+)/invocations$")
VARIANT = "AllTraffic"
# A body over the limit is read and dropped (keeping the connection usable) up to this
# multiple of the limit; beyond it the connection is closed instead.
DRAIN_FACTOR = 8
# What h11 allowed by default (uvicorn's h11_max_incomplete_event_size); SageMaker's own
# headers are well under it (custom attributes: 1,024 characters at most).
MAX_HEADER_BYTES = 16 * 1024


class ServeConfig(uvicorn.Config):
    """uvicorn's Config plus the limits GuardedHttpToolsProtocol enforces."""

    def __init__(
        self,
        app: Any,
        *,
        header_timeout_s: float,
        body_timeout_s: float,
        max_header_bytes: int = MAX_HEADER_BYTES,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, http=GuardedHttpToolsProtocol, **kwargs)
        logging.getLogger("uvicorn.error").addFilter(SAID_IN_THE_ACCESS_LOG)
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.max_header_bytes = max_header_bytes


class _SaidInTheAccessLog(logging.Filter):
    """Drops uvicorn's bare warning for a malformed request: send_400_response logs it with
    the client and the parser's reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Invalid HTTP request received."


SAID_IN_THE_ACCESS_LOG = _SaidInTheAccessLog()  # one instance: addFilter adds it once


class HeadersTooLarge(Exception):
    """Raised in a parser callback: the request's headers are over max_header_bytes."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with an idle limit on fresh connections, limits on how
    long the headers and the body of a request may take to arrive, and on the size of the
    headers (uvicorn has none of these: a client sending a byte a second, or headers without
    end, would hold its connection and grow its buffer for ever)."""

    _guard: asyncio.TimerHandle | None = None
    _guarding: str = ""
    _phase: str = ""  # what the parser is inside: "headers", "body" or "" (between requests)
    _header_bytes = 0  # this request's request line and complete headers
    _unfinished_header_bytes = 0  # reads since the last one that began or ended its headers

    @property
    def _limits(self) -> ServeConfig:
        return cast(ServeConfig, self.config)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms the keep-alive timer only after a response: a connection that
        # never sends a byte would otherwise stay open for ever.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # The parser's callbacks (run inside feed_data) note where the request is and how big
    # its headers are; the timers are set once per read, in data_received.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase, self._header_bytes = "headers", 0

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._phase = "body"

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = ""

    def _count_header_bytes(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self._limits.max_header_bytes:
            # httptools turns this into HttpParserError; uvicorn then calls send_400_response.
            raise HeadersTooLarge

    def data_received(self, data: bytes) -> None:
        inside_headers = self._phase == "headers"
        super().data_received(data)
        if self.transport.is_closing():  # refused by the parser (send_400_response)
            return
        if inside_headers and self._phase == "headers":
            # A read wholly inside one request's headers: what a header not yet complete
            # (not counted by on_header) has buffered so far is at most this.
            self._unfinished_header_bytes += len(data)
            if self._unfinished_header_bytes > self._limits.max_header_bytes:
                self.send_400_response("")
                return
        else:
            self._unfinished_header_bytes = 0
        self._rearm()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what llhttp refused: ours, with the access-log line (and 431
        where the headers were over the limit)."""
        limit = self._limits.max_header_bytes
        if self._header_bytes > limit or self._unfinished_header_bytes > limit:
            self._refuse(431, f"the request headers are over {limit:,} bytes", "headers too large")
        else:
            reason = self._parser_error()
            self._refuse(400, f"malformed HTTP request: {reason}", f"bad HTTP: {reason}")

    @staticmethod
    def _parser_error() -> str:
        """What llhttp said (uvicorn passes only a fixed message)."""
        error = sys.exc_info()[1]
        return str(error) if error is not None else "unparseable"

    def _rearm(self) -> None:
        """Guard what the connection waits for now: headers, a body, or nothing."""
        if self._phase == "headers":
            self._arm("headers", self._limits.header_timeout_s)
        elif self._phase == "body":
            self._arm("body", self._limits.body_timeout_s)
        else:
            self._disarm()

    def _arm(self, what: str, seconds: float) -> None:
        if self._guarding != what:
            self._disarm()
            self._guarding = what
            self._guard = self.loop.call_later(seconds, self._expired, what)

    def _disarm(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
        self._guard, self._guarding = None, ""

    def _expired(self, what: str) -> None:
        self._guard, self._guarding = None, ""
        if self.transport.is_closing():
            return
        if what == "headers":
            self._refuse(408, "the request headers took too long to arrive", "headers too slow")
        else:  # a response may have begun: close without one
            self._log(408, 0, "body too slow")
            self.transport.close()

    def _refuse(self, status: int, message: str, note: str) -> None:
        """Answer before the request was parsed (no ASGI cycle exists yet), then close."""
        answer = error_answer(status, message, runtime=False)
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: "
            f"{answer.content_type}\r\nContent-Length: {len(answer.body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        self._log(status, len(answer.body), note)
        self.transport.write(head.encode() + answer.body)
        self.transport.close()

    def _log(self, status: int, size: int, note: str) -> None:
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        log_line(client, "-", "-", status, size, note)


def log_line(client: str, method: str, path: str, status: int, size: int, note: str = "") -> None:
    extra = f" {note}" if note else ""
    sys.stderr.write(
        f'{time.strftime("%H:%M:%S")} {client} "{method} {path}" {status} {size}{extra}\n'
    )


class _Answer:
    """One response: status, body, content type, extra headers, close the connection."""

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        self.status, self.body, self.content_type = status, body, content_type
        self.headers = headers or {}
        self.close = close


def json_answer(status: int, document: Any) -> _Answer:
    return _Answer(status, json.dumps(document).encode())


def error_answer(
    status: int, message: str, runtime: bool, headers: dict[str, str] | None = None
) -> _Answer:
    """The container's JSON error; on the runtime path wrapped as sagemaker-runtime does."""
    reason = HTTPStatus(status).phrase
    body = json.dumps({"error": reason, "status": status, "message": message}).encode()
    if not runtime:
        return _Answer(status, body, headers=headers)
    # What the SageMaker runtime answers when the container returned an error: 424
    # ModelError carrying the container's status and body (botocore raises ModelError).
    kind = "client" if status < 500 else "server"
    error = {
        "ErrorCode": "ModelError",
        "OriginalStatusCode": status,
        "OriginalMessage": body.decode(),
        "Message": f'Received {kind} error ({status}) from primary with message "{message}".',
    }
    return _Answer(
        424,
        json.dumps(error).encode(),
        headers={"x-amzn-ErrorType": "ModelError", **(headers or {})},
    )


def refused_answer(refusal: Refused, runtime: bool) -> _Answer:
    """503 with Retry-After: the server is at capacity or shutting down."""
    return error_answer(503, refusal.message, runtime, {"Retry-After": str(refusal.retry_after)})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class ServingApp:
    """The ASGI app: routes, the admission deadline, in-flight accounting for draining."""

    def __init__(self, service: InferenceService, *, access_log: bool, deadline_s: float):
        self.service = service
        self.access_log = access_log
        self.deadline_s = deadline_s
        self.draining = False
        self.in_flight = 0
        self.responses: Counter[int] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; no websockets
        started = time.monotonic()
        answer = await self._route(scope, receive, started)
        if answer is not None:
            await self._send(scope, send, answer)

    async def _route(self, scope: Scope, receive: Receive, started: float) -> _Answer | None:
        method, path = scope["method"], scope["path"]
        runtime = bool(RUNTIME_PATH.match(path))
        if method == "GET":
            return self._get(path)
        if method != "POST":
            return await self._drained(
                scope, receive, error_answer(405, f"{method} is not supported here", False)
            )
        if path != "/invocations" and not runtime:
            return await self._drained(
                scope, receive, error_answer(404, f"no such path: POST {path}", False)
            )
        if self.draining:
            refusal = error_answer(503, "the server is shutting down", runtime)
            refusal.close = True
            return refusal
        deadline = started + self.deadline_s
        if (overloaded := self._refused_before_the_body(scope, runtime, deadline)) is not None:
            return overloaded
        self.in_flight += 1
        try:
            return await self._invocation(scope, receive, runtime, deadline)
        finally:
            self.in_flight -= 1

    def _refused_before_the_body(
        self, scope: Scope, runtime: bool, deadline: float
    ) -> _Answer | None:
        """503 + Retry-After now, unread, for a request the batcher would refuse even with one
        image: under overload most requests are, and reading, joining and copying bodies that
        are refused anyway took the event loop's share of a core from the forward passes
        (uvicorn drops the body as it arrives; the connection stays usable). A body without
        a declared length, or over the limit, goes the usual way (413 is the better answer)."""
        declared = _header(scope, b"content-length")
        if not self.service.ready or declared is None:
            return None
        if int(declared) > self.service.limits.max_payload_bytes:
            return None
        try:
            self.service.admit(1, deadline)
        except Refused as exc:
            return refused_answer(exc, runtime)
        return None

    def _get(self, path: str) -> _Answer:
        service = self.service
        if path == "/ping":
            if service.ready and not self.draining:
                return json_answer(200, {"status": "ok"})
            return json_answer(503, {"status": "draining" if self.draining else "loading"})
        if path == "/execution-parameters":
            return json_answer(
                200,
                {
                    "MaxConcurrentTransforms": service.max_batch_size,
                    "BatchStrategy": "SINGLE_RECORD",
                    "MaxPayloadInMB": max(1, service.limits.max_payload_bytes // MiB),
                },
            )
        if path == "/stats":
            responses = {str(k): v for k, v in sorted(self.responses.items())}
            loop = type(asyncio.get_running_loop()).__module__.split(".")[0]  # uvloop, asyncio
            return json_answer(
                200,
                {
                    **service.stats(),
                    "in_flight": self.in_flight,
                    "responses": responses,
                    "event_loop": loop,
                },
            )
        return error_answer(404, f"no such path: GET {path}", False)

    async def _invocation(
        self, scope: Scope, receive: Receive, runtime: bool, deadline: float
    ) -> _Answer | None:
        service = self.service
        limit = service.limits.max_payload_bytes
        body = await self._read_body(scope, receive, limit)
        if body is None:
            return None  # the client went away
        if isinstance(body, _Answer):
            refusal = error_answer(body.status, body.body.decode(), runtime)
            refusal.close = body.close
            return refusal
        if not service.ready:
            return error_answer(
                503, "the model is still loading; retry when /ping answers 200", runtime
            )
        from dogclf.serving.server import Invocation  # server.py imports this module

        attributes = _header(scope, b"x-amzn-sagemaker-custom-attributes")
        try:
            payload, content_type = await service.invoke(
                Invocation(
                    bytes(body),
                    _header(scope, b"content-type"),
                    _header(scope, b"accept"),
                    attributes,
                    deadline,
                )
            )
        except inference.RequestError as exc:
            return error_answer(exc.status, exc.message, runtime)
        except Refused as exc:
            return refused_answer(exc, runtime)
        except Exception as exc:  # a bug, not bad input: say so, keep serving
            traceback.print_exc(file=sys.stderr)
            return error_answer(500, f"internal error: {type(exc).__name__}: {exc}", runtime)
        headers = {}
        if attributes is not None:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = attributes
        if runtime:
            headers["x-Amzn-Invoked-Production-Variant"] = VARIANT
        return _Answer(200, payload, content_type, headers)

    async def _read_body(
        self, scope: Scope, receive: Receive, limit: int
    ) -> bytes | _Answer | None:
        """The body; an _Answer (413, its message as body) when over `limit`; None when the
        client disconnected. A declared length over the limit is refused before reading."""
        declared = _header(scope, b"content-length")
        length = int(declared) if declared is not None else None  # llhttp checked it is a number
        if length is not None and length > limit:
            return await self._drained(scope, receive, self._too_large(length, limit))
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:  # chunked, no length: refuse once it is over
                return await self._drained(
                    scope, receive, self._too_large(size, limit, "at least "), size
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    def _too_large(size: int, limit: int, qualifier: str = "") -> _Answer:
        message = f"request body is {qualifier}{size:,} bytes; the limit is {limit:,}"
        return _Answer(413, message.encode(), "text/plain")

    async def _drained(
        self, scope: Scope, receive: Receive, answer: _Answer, already: int = 0
    ) -> _Answer:
        """Read and drop the rest of an unwanted body (the connection stays usable), or
        mark the answer to close the connection when the body is far over the limit."""
        declared = _header(scope, b"content-length")
        budget = DRAIN_FACTOR * self.service.limits.max_payload_bytes
        if declared is not None and int(declared) > budget:
            answer.close = True
            return answer
        seen = already
        more = True
        while more and seen <= budget:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            seen += len(message.get("body", b""))
            more = message.get("more_body", False)
        answer.close = answer.close or more
        return answer

    async def _send(self, scope: Scope, send: Send, answer: _Answer) -> None:
        headers = [
            (b"content-type", answer.content_type.encode()),
            (b"content-length", str(len(answer.body)).encode()),
            (b"x-amzn-requestid", str(uuid.uuid4()).encode()),
        ]
        headers += [(k.encode(), v.encode()) for k, v in answer.headers.items()]
        if answer.close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})
        self.responses[answer.status] += 1
        if self.access_log or answer.status >= 400:
            client = scope.get("client")
            who = f"{client[0]}:{client[1]}" if client else "-"
            log_line(who, scope["method"], scope["path"], answer.status, len(answer.body))
