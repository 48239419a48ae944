"""The harness itself: the product's session factory talks to the moto server over HTTP."""

from __future__ import annotations

import urllib.request

from dogclf.aws.session import AwsContext
from dogclf.local.emulator import Emulator


def test_session_factory_reaches_moto_over_http(aws: Emulator) -> None:
    ctx = AwsContext()
    s3 = ctx.client("s3")
    assert s3.meta.endpoint_url == aws.url  # over HTTP, not an in-process mock
    s3.create_bucket(Bucket="harness-check")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert names == ["harness-check"]
    assert ctx.account_id == "123456789012"


def test_reset_between_tests_leaves_an_empty_account(aws: Emulator) -> None:
    assert AwsContext().client("s3").list_buckets()["Buckets"] == []


def test_server_is_plain_http_on_loopback(aws: Emulator) -> None:
    assert aws.url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(aws.url + "/moto-api/data.json", timeout=10) as resp:
        assert resp.status == 200
