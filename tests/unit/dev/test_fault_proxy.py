"""The fault proxy's request matching (``method``, ``path``, ``after``) against a real HTTP
server on loopback, and the harness's rule for pairs a survey saw untouched."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from driftloop_dev.faults import Fault, FaultProxy
from driftloop_dev.faults.harness import Case, untouched


class _Ok(BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = f"{self.command} {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def proxy():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    built = FaultProxy(server.server_address[1], name="ok")
    yield built
    built.close()
    server.shutdown()
    server.server_close()


def _status(proxy: FaultProxy, method: str, path: str) -> int:
    request = urllib.request.Request(proxy.url + path, method=method, data=b"x" * 3)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code


def test_after_lets_the_first_matching_requests_pass(proxy):
    proxy.set(Fault("http500", method="POST", path=r"/alias", after=1))
    assert _status(proxy, "POST", "/api/alias") == 200  # the first alias write passes
    assert _status(proxy, "GET", "/api/alias") == 200  # not matched: passes, not counted
    assert _status(proxy, "POST", "/api/alias") == 500  # the second is refused
    assert _status(proxy, "POST", "/api/tag") == 200
    assert proxy.stats.faulted == {"http500": 1}
    proxy.set(Fault("http500", method="POST", path=r"/alias", after=1))  # the count restarts
    assert _status(proxy, "POST", "/api/alias") == 200


def test_faults_that_cannot_be_built_say_why():
    with pytest.raises(ValueError, match="refuse acts on connections"):
        Fault("refuse", after=1)
    with pytest.raises(ValueError, match="after must be >= 0"):
        Fault("http500", after=-1)
    assert str(Fault("http500", method="POST", path="/alias", after=1)) == (
        "http500[POST /alias after 1]"
    )


def test_a_pair_the_survey_saw_untouched_is_not_run():
    touches = {("retrain_detector", "gate"): {"s3": 4, "mlflow": 0}}
    on_mlflow = Case("retrain_detector", "gate", "mlflow", Fault("reset"))
    outcome = untouched(on_mlflow, touches)
    assert outcome is not None
    assert outcome.outcome == "untouched"
    assert "0 requests to mlflow" in outcome.note
    assert untouched(Case("retrain_detector", "gate", "s3", Fault("reset")), touches) is None
    # a step the surveys never ran is run, not assumed untouched
    assert untouched(Case("retrain_detector", "reject", "s3", Fault("reset")), touches) is None


def test_a_put_that_expects_100_continue_is_not_delayed(proxy):
    """botocore sends ``Expect: 100-continue`` with every PUT and waits up to a second for the
    go-ahead: the proxy, which reads whole requests, gives it at once."""
    import http.client
    import time

    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    conn.putrequest("PUT", "/bucket/key")
    conn.putheader("Content-Length", "5")
    conn.putheader("Expect", "100-continue")
    conn.endheaders()
    started = time.monotonic()
    conn.sock.settimeout(5)
    assert conn.sock.recv(64).startswith(b"HTTP/1.1 100 Continue")
    assert time.monotonic() - started < 1
    conn.send(b"hello")
    answer = conn.getresponse()
    assert answer.status == 200
    assert answer.read() == b"PUT /bucket/key"
    conn.close()
