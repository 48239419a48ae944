"""The embedded AWS emulator: moto's server on loopback, a random port, plus moto_ext.

Clients reach it over real HTTP through AWS_ENDPOINT_URL, exactly as they reach AWS,
so the code under test or in the demo is the code that runs against AWS.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from dogclf.errors import require_extra

DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
# The same keys as boto3.Session arguments, for the emulator's own threads.
DUMMY_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}


@dataclass
class Emulator:
    url: str
    _server: Any = field(repr=False)

    def env(self) -> dict[str, str]:
        """Variables that point boto3 (and the AWS CLI) at this emulator, no real account."""
        return {
            **DUMMY_ENV,
            "AWS_ENDPOINT_URL": self.url,
            # Nothing from ~/.aws may leak in: a real profile must never be used here.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def _post(self, path: str, body: dict[str, Any] | None = None) -> None:
        from dogclf.local.moto_ext import post_json

        post_json(self.url, path, body or {})

    def configure(self) -> None:
        # Lambda invoke would need Docker otherwise (see DESIGN.md).
        self._post("/moto-api/config", {"lambda": {"use_docker": False}})

    def reset(self) -> None:
        """Forget every resource (between tests)."""
        self._post("/moto-api/reset")
        self.configure()

    def stop(self) -> None:
        self._server.stop()


def start_emulator() -> Emulator:
    require_extra("moto", "emulator", "demo")
    from moto.server import ThreadedMotoServer

    from dogclf.local import moto_ext
    from dogclf.local.pins import check_pins

    check_pins()
    moto_ext.install()
    # One access-log line per request would bury the commands' own output (errors still show).
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    emulator = Emulator(f"http://{host}:{port}", server)
    emulator.configure()
    return emulator


@contextmanager
def patched_environ(values: dict[str, str], *, scrub: tuple[str, ...] = ()) -> Iterator[None]:
    """Set `values` for a block, after removing every variable that starts with one of
    `scrub`; the whole environment is as before afterwards, whatever the block set."""
    saved = dict(os.environ)
    for key in list(os.environ):
        if scrub and key.startswith(scrub):
            del os.environ[key]
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
