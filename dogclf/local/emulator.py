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

from dogclf.errors import DogclfError, require_extra

DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
# How long dogclf waits for a role to propagate here (the emulator's is at most 3 s).
ROLE_WAIT_S = 4.0
MAX_ROLE_DELAY_S = 3.0
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
    # Where checked requests are counted (DOGCLF_CHECK_REQUESTS_LOG when it started).
    check_log: str | None = None

    def env(self) -> dict[str, str]:
        """Variables that point boto3 (and the AWS CLI) at this emulator, no real account.
        Every request dogclf sends here is checked against its service model (what AWS
        would refuse fails before it is sent: dogclf/aws/request_check.py)."""
        from dogclf.aws.request_check import CHECK_ENV, LOG_ENV
        from dogclf.aws.session import ROLE_WAIT_ENV

        return {
            **DUMMY_ENV,
            "AWS_ENDPOINT_URL": self.url,
            # Nothing from ~/.aws may leak in: a real profile must never be used here.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            CHECK_ENV: "1",
            # Its roles propagate within set_faults' role_delay_s, at most MAX_ROLE_DELAY_S.
            ROLE_WAIT_ENV: str(ROLE_WAIT_S),
            **({LOG_ENV: self.check_log} if self.check_log else {}),
        }

    def set_faults(
        self,
        rate: float = 0.0,
        *,
        after_rate: float = 0.0,
        role_delay_s: float = 0.0,
        seed: int = 0,
        kinds: tuple[str, ...] = ("throttle", "500", "503"),
        operations: tuple[str, ...] = (),
        max_faults: int = 0,
    ) -> None:
        """Make this emulator flaky (moto_ext/faults.py: what each setting does); all zero
        turns it off again."""
        from dogclf.local.moto_ext.faults import fault_state

        if not 0 <= role_delay_s <= MAX_ROLE_DELAY_S:
            raise DogclfError(
                f"a role propagation delay of {role_delay_s:g} s is out of range",
                f"choose 0 to {MAX_ROLE_DELAY_S:g} s (dogclf waits {ROLE_WAIT_S:g} s here)",
            )
        settings: dict[str, Any] = {
            "rate": rate,
            "after_rate": after_rate,
            "role_delay_s": role_delay_s,
            "seed": seed,
            "kinds": list(kinds),
            "operations": list(operations),
            "max_faults": max_faults,
        }
        fault_state(self.url, settings)

    def fault_counts(self) -> dict[str, int]:
        """Faults injected since the last set_faults, by kind."""
        from dogclf.local.moto_ext.faults import fault_state

        return {k: int(v) for k, v in fault_state(self.url)["counts"].items()}

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
        self.set_faults()

    def stop(self) -> None:
        self._server.stop()


def start_emulator() -> Emulator:
    require_extra("moto", "emulator", "demo")
    from moto.server import ThreadedMotoServer

    from dogclf.aws.request_check import LOG_ENV
    from dogclf.local import moto_ext
    from dogclf.local.moto_ext import faults
    from dogclf.local.pins import check_pins

    check_pins()
    moto_ext.install()
    # One access-log line per request would bury the commands' own output (errors still show).
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    faults.wrap_server(server, url)
    emulator = Emulator(url, server, os.environ.get(LOG_ENV) or None)
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
