"""dogclf's own /moto-api routes: serving them inside moto, and posting to them.

moto 5.2.5 has no way to script a resource's statuses or to turn on the emulated runtimes,
so each of those is a POST route added to moto's /moto-api table (next to its own
/moto-api/reset). Settings sent there live on a moto backend, so /moto-api/reset forgets
them. Nothing here changes a route moto already serves.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# What a /moto-api route returns: status, headers, body.
Response = tuple[int, dict[str, str], str]
# A route's own work: the POSTed JSON body and the URL this moto server answers on.
PostHandler = Callable[[dict[str, Any], str], Response]


def post_json(emulator_url: str, path: str, body: dict[str, Any]) -> None:
    """POST a JSON body to one of the emulator's /moto-api routes (client side)."""
    import urllib.request

    req = urllib.request.Request(emulator_url + path, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def reply(status: int, body: dict[str, Any]) -> Response:
    return status, {}, json.dumps(body)


def account_and_region(body: dict[str, Any]) -> tuple[str, str]:
    """The backend a route's settings are for: the body's, else moto's default account."""
    from moto.core import DEFAULT_ACCOUNT_ID

    return body.get("account_id") or DEFAULT_ACCOUNT_ID, body.get("region") or "us-east-1"


def add_post_route(path: str, usage: str, handle: PostHandler) -> None:
    """Serve POST `path` on the moto server; any other method gets 405 and `usage`."""
    from moto.moto_api._internal import urls

    def route(request: Any, full_url: str, headers: Any) -> Response:
        if request.method != "POST":
            return reply(405, {"Error": usage})
        return handle(json.loads(request.data or b"{}"), request.host_url.rstrip("/"))

    urls.url_paths["{0}" + path] = route
