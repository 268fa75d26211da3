"""`reconciler router top` against real `router serve` processes: three routers (HA) in front of
one backend show it once, the latency and error columns come from requests sent through them,
`--once -o json` keeps its field names, and Ctrl-C ends it without click's "Aborted!".
"""

from __future__ import annotations

import contextlib
import http.server
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.helpers import ctrl_c_ends_it
from tests.router import harness
from tests.router.harness import deployment, score_url, write_config

ROW_FIELDS = {
    "deployment", "replicas", "desired_replicas", "backends_up", "utilization_ratio",
    "queued_requests", "in_flight_requests", "requests_per_second", "error_ratio",
    "latency_p50_seconds", "latency_p99_seconds",
}  # fmt: skip


@contextlib.contextmanager
def top(*args: str) -> Iterator[subprocess.Popen[str]]:
    """`reconciler router top ARGS` running; killed on the way out if it still runs (a test
    that failed must not leave it behind)."""
    with subprocess.Popen(
        [sys.executable, "-m", "reconciler", "router", "top", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_ends_it,
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()


def _post(url: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, b"{}"), timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        err.close()
        return err.code


@contextlib.contextmanager
def load(bases: list[str]) -> Iterator[list[int]]:
    """Requests one after another, round robin over the routers, until the block ends: every
    fifth answered 500 by the model, every tenth slow (300 ms), the rest 20 ms."""
    codes: list[int] = []
    stop = threading.Event()

    def send() -> None:
        i = 0
        while not stop.is_set():
            sleep = 300 if i % 10 == 9 else 20
            status = 500 if i % 5 == 4 else 200
            url = score_url(bases[i % len(bases)], "blue", f"sleep_ms={sleep}&status={status}")
            codes.append(_post(url))
            i += 1

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    try:
        yield codes
    finally:
        stop.set()
        thread.join(15)


def test_three_routers_show_one_backend_once_with_latency_and_errors(
    tmp_path: Path, spawn: Callable[..., harness.BackendProcess]
) -> None:
    backend = spawn("only")
    with contextlib.ExitStack() as stack:
        routers = [
            stack.enter_context(
                harness.serving(
                    write_config(tmp_path / f"r{i}.yaml", [deployment("blue", [backend.url])])
                )
            )
            for i in range(3)
        ]
        urls = [arg for r in routers for arg in ("--url", f"http://127.0.0.1:{r.admin_port}")]
        with load([f"http://127.0.0.1:{r.port}" for r in routers]) as codes:
            while len(codes) < 3:  # every router has answered: each has the series
                time.sleep(0.05)
            with top("--once", "-o", "json", "--interval", "4", *urls) as process:
                out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert set(codes) == {200, 500}

    sample = json.loads(out)
    assert set(sample) == {"time", "interval_seconds", "routers", "deployments"}
    assert sample["time"].endswith("Z") and sample["routers"] == {"read": 3, "answered": 3}
    assert sample["interval_seconds"] >= 4
    [blue] = sample["deployments"]
    assert set(blue) == ROW_FIELDS
    assert blue["deployment"] == "blue"
    assert blue["backends_up"] == 1  # one pod, seen by three routers
    # Outside a cluster no instance coordinates: nothing to say about replicas.
    assert blue["replicas"] is blue["desired_replicas"] is blue["utilization_ratio"] is None
    answered = blue["requests_per_second"] * sample["interval_seconds"]
    assert answered >= 10, blue
    assert abs(blue["error_ratio"] - 0.2) <= 2 / answered, blue
    # Nine in ten take 20 ms or a little more, one in ten 300 ms: the quantiles of the three
    # routers' buckets added up.
    assert 0.01 <= blue["latency_p50_seconds"] <= 0.1, blue
    assert 0.25 <= blue["latency_p99_seconds"] <= 0.5, blue


def test_the_table_has_a_timestamp_and_ctrl_c_ends_the_live_view_with_0(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    path = write_config(tmp_path / "router.yaml", [deployment("blue", [backends[0].url])])
    with harness.serving(path) as router:
        admin = f"http://127.0.0.1:{router.admin_port}"
        with top("--interval", "0.2", "--url", admin) as process:
            assert process.stdout is not None
            stamp = process.stdout.readline()
            assert time.strftime("%Y-%m-%d") in stamp and "routers 1/1" in stamp
            assert process.stdout.readline().split()[:2] == ["DEPLOYMENT", "REPLICAS"]
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "Aborted" not in out + err and "Traceback" not in err, err


def test_ctrl_c_before_the_one_sample_exits_130() -> None:
    read = threading.Event()

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            read.set()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        metrics = f"http://127.0.0.1:{server.server_port}"
        with top("--once", "--interval", "60", "--url", metrics) as process:
            assert read.wait(30), "top never read the metrics"
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert process.returncode == 130
    assert out == "" and "Aborted" not in err and "Traceback" not in err, err
