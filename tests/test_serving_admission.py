"""`dogclf serve` under hostile and heavy traffic: idle keep-alive connections by the
hundred, clients that send their headers or body a byte a second, and more requests than
the model can take (503 + Retry-After, never another 5xx, /ping still answering)."""

from __future__ import annotations

import base64
import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from serving_support import Client, Served, TrainedModel, serving

pytestmark = pytest.mark.slow

# Small limits, so the tests wait seconds, not the defaults' minutes.
KEEP_ALIVE_S = 3
HEADER_TIMEOUT_S = 2
BODY_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def guarded(
    trained_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A real `dogclf serve` with short connection limits (set as the endpoint would:
    DOGCLF_SERVING__* in the container's environment)."""

    log = tmp_path_factory.mktemp("guarded") / "serve.log"
    with serving(
        trained_model,
        log,
        DOGCLF_SERVING__KEEP_ALIVE_S=str(KEEP_ALIVE_S),
        DOGCLF_SERVING__HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        DOGCLF_SERVING__BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
    ) as server:
        yield server


def read_response(sock: socket.socket) -> bytes:
    """One whole response (headers + Content-Length body) from a keep-alive socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def wait_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (blocks until then)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


PING = b"GET /ping HTTP/1.1\r\nHost: dogclf\r\n\r\n"


def test_500_idle_keep_alive_connections_do_not_stop_requests_and_are_closed_when_idle(
    guarded: Served,
) -> None:
    client = guarded.client
    idle: list[socket.socket] = []
    try:
        for _ in range(500):
            sock = socket.create_connection((client.host, client.port))
            sock.sendall(PING)
            assert read_response(sock).startswith(b"HTTP/1.1 200")
            idle.append(sock)  # keep-alive: open, nothing more sent
        silent = socket.create_connection((client.host, client.port))  # never sends a byte
        idle.append(silent)
        # While they are all open, the server still answers new clients, on all paths.
        image, breed = guarded.model.test_images()[0]
        for _ in range(5):
            answer = client.invoke(image.read_bytes(), "image/jpeg")
            assert answer.status == 200 and answer.json()["predictions"][0]["label"] == breed
        assert client.request("GET", "/ping").status == 200
        # An idle connection is reused as long as it is used within the limit...
        idle[0].sendall(PING)
        assert read_response(idle[0]).startswith(b"HTTP/1.1 200")
        # ...and every idle one, the silent one too, is closed by the server after it.
        for sock in idle:
            assert wait_closed(sock) == b""
        assert client.stats()["ready"] is True
    finally:
        for sock in idle:
            sock.close()


def send_slowly(sock: socket.socket, data: bytes) -> int:
    """Send a byte a second until the server answers or closes; return the bytes sent."""
    for sent, byte in enumerate(data):
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            return sent
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return sent
        time.sleep(1)  # the client's pace, not a time limit on the server
    return len(data)


def test_a_client_sending_its_headers_a_byte_a_second_is_cut(guarded: Served) -> None:
    headers = (
        b"POST /invocations HTTP/1.1\r\nHost: dogclf\r\nContent-Type: image/jpeg\r\n"
        b"X-Amzn-SageMaker-Custom-Attributes: top_k=1\r\nContent-Length: 4\r\n\r\n"
    )
    client = guarded.client
    with socket.create_connection((client.host, client.port)) as sock:
        sent = send_slowly(sock, headers)
        answer = wait_closed(sock)
    assert sent < len(headers), "the server waited for the whole slow request"
    assert answer.startswith(b"HTTP/1.1 408")
    assert client.request("GET", "/ping").status == 200
    assert "408" in guarded.log.read_text() and "headers too slow" in guarded.log.read_text()


def test_a_client_sending_its_body_a_byte_a_second_is_cut(guarded: Served) -> None:
    client = guarded.client
    image, _ = guarded.model.test_images()[0]
    data = image.read_bytes()
    head = (
        f"POST /invocations HTTP/1.1\r\nHost: dogclf\r\nContent-Type: image/jpeg\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection((client.host, client.port)) as sock:
        sock.sendall(head)
        sent = send_slowly(sock, data)
        answer = wait_closed(sock)
    assert sent < len(data) and answer == b""
    assert "body too slow" in guarded.log.read_text()


MALFORMED = [
    ("not HTTP", b"HELLO DOG\r\n\r\n", 400),
    ("a Content-Length that is not a number", b"Content-Length: twelve\r\n\r\n", 400),
    ("a negative Content-Length", b"Content-Length: -1\r\n\r\n", 400),
    ("a Content-Length past 64 bits", b"Content-Length: 99999999999999999999999\r\n\r\n", 400),
    ("two Content-Lengths", b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    (
        "Content-Length beside chunked (request smuggling)",
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("a chunk size that is not hex", b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n", 400),
    ("headers without end", b"X-Filler: " + b"a" * 40_000 + b"\r\n\r\n", 431),
]


@pytest.mark.parametrize(("name", "rest", "status"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_http_gets_a_4xx_and_the_connection_is_closed(
    guarded: Served, name: str, rest: bytes, status: int
) -> None:
    """What the HTTP parser refuses never reaches the app: a 4xx, then the connection is
    closed (the parser cannot tell where the next request would begin)."""
    client = guarded.client
    start = b"POST /invocations HTTP/1.1\r\nHost: dogclf\r\nContent-Type: image/jpeg\r\n"
    request = rest if name == "not HTTP" else start + rest
    with socket.create_connection((client.host, client.port)) as sock:
        # Refused part-way through the headers, the answer is still there to read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        answer = wait_closed(sock)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    document = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert document["status"] == status and document["message"]
    assert client.request("GET", "/ping").status == 200
    log = guarded.log.read_text()
    assert "Traceback" not in log and " 500 " not in log


def test_a_header_that_never_ends_is_refused_431_before_it_is_whole(guarded: Served) -> None:
    """One header value sent a kilobyte at a time, never finished: the parser buffers it
    without a callback, so the limit counts the reads."""
    client = guarded.client
    with socket.create_connection((client.host, client.port)) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: dogclf\r\nX-Filler: ")
        sent = 0
        while not select.select([sock], [], [], 0.02)[0] and sent < 1024 * 1024:
            try:
                sock.sendall(b"a" * 1024)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1024
        answer = wait_closed(sock)
    assert sent < 64 * 1024, f"the server buffered {sent:,} bytes of one header"
    assert answer.startswith(b"HTTP/1.1 431 ") and b"over 16,384 bytes" in answer
    assert "headers too large" in guarded.log.read_text()


# ---------------------------------------------------------------- overload


def post(url: str, body: bytes, path: str = "/invocations") -> tuple[int, dict[str, str], Any]:
    client = Client(url)
    response = client.request("POST", path, body, {"Content-Type": "image/jpeg"})
    return response.status, response.headers, response.json()


def refused_unread(port: int, body: bytes) -> None:
    """At capacity, a request is answered 503 + Retry-After from its headers alone, before
    its body is sent; the body sent after that is dropped, not read as a request, and the
    connection serves the next one."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: dogclf\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        answer = read_response(sock)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"retry-after: " in answer.lower()
        sock.sendall(body + b"GET /ping HTTP/1.1\r\nHost: dogclf\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")


def test_overload_is_refused_with_503_and_retry_after_and_ping_keeps_answering(
    trained_model: TrainedModel, capfd: pytest.CaptureFixture[str]
) -> None:
    """The real server and model in this process, the model held busy: the tiny test model
    answers in a millisecond, faster than this test's client could ever overload it on two
    cores, so its forward pass waits on a gate the test opens (the only stand-in here)."""
    import torch

    from dogclf.model import inference
    from dogclf.serving.server import Admission, InferenceService, ModelServer

    deadline_s = 2.0
    service = InferenceService(
        inference.Limits(),
        max_batch_size=1,
        max_batch_wait_ms=0,
        workers=1,
        torch_threads=torch.get_num_threads(),  # leave this process's setting as it is
        admission=Admission(max_queue=3, deadline_s=deadline_s),
    )
    service.load(trained_model.extracted)
    assert service.batcher is not None
    gate, entered = threading.Event(), threading.Event()
    real_run = service.batcher.run_batch

    def held(items: list[Any]) -> Any:
        entered.set()
        gate.wait()
        return real_run(items)

    service.batcher.run_batch = held
    server = ModelServer(service, "127.0.0.1", 0).start()
    image, breed = trained_model.test_images()[0]
    data = image.read_bytes()
    results: list[tuple[int, dict[str, str], Any]] = []

    def send() -> None:
        results.append(post(server.url, data))

    try:
        client = Client(server.url)
        four = json.dumps({"images": [base64.b64encode(data).decode()] * 4})
        too_many = client.request(
            "POST", "/invocations", four.encode(), {"Content-Type": "application/json"}
        )
        assert too_many.status == 413 and "queues at most 3" in too_many.json()["message"]

        first = threading.Thread(target=send)
        first.start()
        entered.wait()  # the worker is busy with the first request
        queued = [threading.Thread(target=send) for _ in range(3)]
        for t in queued:
            t.start()
        while client.stats()["admission"]["queued"] != 3:
            pass  # the queue is full now
        queued_at = time.monotonic()

        status, headers, document = post(server.url, data)
        assert status == 503 and int(headers["retry-after"]) >= 1
        assert document["status"] == 503 and "at capacity" in document["message"]
        status, headers, document = post(server.url, data, "/endpoints/dogclf-dev/invocations")
        assert status == 424 and document["OriginalStatusCode"] == 503 and headers["retry-after"]
        assert client.request("GET", "/ping").status == 200  # health checks still pass
        refused_unread(server.port, data)

        while time.monotonic() < queued_at + deadline_s:
            time.sleep(0.05)  # the queued requests' deadline passes while the model is busy
        gate.set()
        first.join()
        for t in queued:
            t.join()
        statuses = sorted(status for status, _, _ in results)
        assert statuses == [200, 503, 503, 503], results
        expired = [doc for status, _, doc in results if status == 503]
        assert all("deadline" in doc["message"] for doc in expired)
        assert post(server.url, data)[2]["predictions"][0]["label"] == breed  # back to normal
        stats = client.stats()
        assert stats["responses"]["503"] == 5 and stats["batching"]["expired_in_queue"] == 3
        assert stats["batching"]["refused_queue_full"] >= 2
        assert not any(code.startswith("5") and code != "503" for code in stats["responses"])
    finally:
        gate.set()
        assert server.stop() == 0
    log = capfd.readouterr().err
    assert log.count('"POST /invocations" 503') == 5 and " 500 " not in log


def test_refused_items_never_reach_the_model_and_the_estimate_follows_the_batches() -> None:
    """The batcher alone: a full queue and a deadline its wait would overrun are refused at
    once; an item whose deadline passes in the queue is refused, not run."""
    from dogclf.serving.batching import DynamicBatcher, Overloaded

    ran: list[int] = []
    gate = threading.Event()

    def run_batch(items: list[int]) -> list[int]:
        gate.wait()
        ran.extend(items)
        return items

    batcher = DynamicBatcher(run_batch, max_batch_size=1, max_wait_s=0, max_queue=2, item_s=0.5)
    batcher.start()
    busy = batcher.submit(0)
    while batcher.queued:
        pass  # the worker took it
    soon = time.monotonic() + 0.01
    with pytest.raises(Overloaded, match="capacity") as refused:
        batcher.submit(1, deadline=soon)  # behind a 0.5 s pass: cannot make it
    assert refused.value.retry_after >= 1
    late = batcher.submit(2, deadline=time.monotonic() + 2.5)  # 1 s expected: admitted
    batcher.submit(3)
    with pytest.raises(Overloaded, match="2 images queued"):
        batcher.submit(4)
    while time.monotonic() < soon + 2.5:
        time.sleep(0.05)
    gate.set()
    assert busy.result() == 0
    with pytest.raises(Overloaded, match="deadline"):
        late.result()
    batcher.close()
    assert ran == [0, 3]
    stats = batcher.stats.as_dict()
    assert (stats["refused_deadline"], stats["refused_queue_full"], stats["expired_in_queue"]) == (
        1,
        1,
        1,
    )
    assert batcher.item_s != 0.5  # measured passes replace the first guess
