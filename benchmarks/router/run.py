"""The inference router against nginx and against no proxy at all, under fixed-rate (open-loop)
load on loopback, in one run with one backend.

    python3 benchmarks/router/run.py            # the full run, about 4 minutes
    python3 benchmarks/router/run.py --quick    # a smoke run, about a minute
    python3 benchmarks/router/run.py --skip-router --generator vegeta

Three targets, each in front of the same backend process:

  direct  the backend itself                          POST http://127.0.0.1:B/score
  nginx   nginx reverse proxy, worker_processes 1     POST http://127.0.0.1:N/score
  router  `reconciler router serve --config FILE`     POST http://127.0.0.1:R/api/v1/service/bench/score

On two or more cores the proxy under test (nginx, router) runs pinned to core 1 with `taskset`,
the load generator and the backend to core 0, so "max rps" is what the proxy does on one core.

Load is open-loop: request i is sent at start + i/rate whatever the answers do; when every
connection is busy another is opened, so a slow proxy shows as latency and failures, never as a
lower offered rate. Small JSON body, keep-alive connections, 5 s timeout. The generator is
benchmarks/router/loadgen (Go, plain HTTP/1.1 over TCP, vegeta's sending model) because vegeta
itself costs ~80-120 us of CPU per request here: sharing core 0 with the backend it tops out
near 8,000 rps, below the router's 10,000 rps goal. `--generator vegeta` runs the same
benchmark with vegeta (github.com/tsenart/vegeta) to cross-check at low rates.

Phases:
  1. warm-up: one second at 500 rps per target, not recorded;
  2. latency: at 1,000 and 5,000 rps, each target for --latency-seconds, in --rounds rounds
     interleaved (direct, nginx, router, then the other way round), the rounds of a target merged.
     ADDED latency = the proxy's mean (p99) minus the direct backend's mean (p99) at that rate;
  3. max sustained rps, per target: a rate passes when >= 99.9 % of the requests succeed and
     both the sent rate and the throughput (successes per second, counting the wait for the last
     answers) are within 2 % of the target rate. Rates ramp x1.6 from 2,000 until one fails (a
     failed rate is tried once more before it counts), then the gap is bisected.

Each run also records how busy each core was (/proc/stat, anyone's use) and how much of it this
run's processes used (/proc/<pid>/stat, whole process trees). Where a proxy first fails, core 0
(load generator + backend) full while core 1 had room means the harness, not the proxy, set the
max: the figure is then a lower bound, printed with ">=". CPU that none of this run's processes
used (other users of a shared machine) is reported too, with a warning where it took the proxy's
core. As a second throughput figure that does not depend on the harness, the proxy's CPU time per
request at 5,000 rps is turned into a one-core capacity: 1 s / (CPU per request).

The topology is the issue's: the direct baseline has load generator and backend on one core,
while behind a proxy part of the work (the proxy's, and the loopback TCP work its sends and
receives do in the kernel) runs on the other core. On a busy core 0 the baseline can be the
slower of the two at 5,000 rps, which makes ADDED latency look smaller; compare the 1,000 rps
figures, where neither core is near full, and look at the core shares in the JSON.

The backend (benchmarks/router/backend, Go, built by this script) is a hand-written HTTP/1.1
server answering POST .../score with a small JSON body. It costs about what nginx's `return 200`
does per request (~20 us here; Go's net/http costs ~50), and unlike `return 200` it reads the
request body and answers 400 to an empty one, so a proxy that drops the body fails; it counts
what it scored, and each run checks that every success reached it.

Installs (once; later runs reuse them), all under .cache/ (gitignored):
  .cache/bench-bin/router-bench-load     `go build` of benchmarks/router/loadgen (stdlib only)
  .cache/bench-bin/router-bench-backend  `go build` of benchmarks/router/backend (stdlib only)
  .cache/bench-bin/vegeta                only with --generator vegeta: `go install
                                         github.com/tsenart/vegeta/v12@v12.13.0` (module proxy)
  nginx    the Debian package, with apt-get (sudo when not root), if no nginx binary is found;
           only the binary is used, run in the foreground with its own config and prefix in a
           temporary folder on a free port, never the system service (installing the package
           may start that service where no policy-rc.d forbids it; this script leaves it be).

Results: markdown tables on stdout, JSON in .cache/bench-router.json. The router is skipped,
with a note, when `reconciler router serve --help` fails.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import math
import operator
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BIN = ROOT / ".cache" / "bench-bin"
RESULTS = ROOT / ".cache" / "bench-router.json"

VEGETA_MODULE = "github.com/tsenart/vegeta/v12"
VEGETA_VERSION = "v12.13.0"
BODY = b'{"data": [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]]}'
DEPLOYMENT = "bench"
LATENCY_RATES = (1000, 5000)

# The goals for the router.
GOAL_MAX_RPS = 10_000
GOAL_MEAN_ADDED_MS = 0.5
GOAL_P99_ADDED_MS = 3.0
GOAL_NGINX_RATIO = 0.5
GOAL_AT = 5000
# Overload rows: offered load as multiples of the router's own max sustained rps.
OVERLOAD_FACTORS = (1.5, 2.0)
GOAL_OVERLOAD_GOODPUT = 0.9  # goodput at 2x max, as a share of max
# Issue 30's overload goal, at 2x max: the admitted requests' p99 added latency (their p99 minus
# the direct backend's, at the latency phase's rate nearest the goodput) and goodput as a share
# of the single-core bound (1 - 2x) / (1 - x) that the refusal floor measured in the same run.
GOAL_OVERLOAD_P99_ADDED_MS = 50.0
GOAL_OVERLOAD_OF_BOUND = 0.9
# The refusal floor: each proxy serving, then refusing, every request at the router's max rate
# (where its loop batches as it does when overloaded), and the CPU each costs.
REFUSE_ALL = """
# `router serve` with admission control shedding from the start and refusing every scoring
# request but the first (the harness waits for one 200 before a target counts as started).
from reconciler.router import admission
started = admission.Admission.__init__
def shedding(self, target_lag):
    started(self, target_lag)
    self.shed_fraction = 1.0
def admit(self):
    if self.admitted:
        self.refused += 1
        return False
    self.admitted += 1
    return True
admission.Admission.__init__ = shedding
admission.Admission.observe = lambda self, lag, busy=1.0: None
admission.Admission.admit = admit
from reconciler.cli import main as cli
cli.main()
"""

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- tools


def go_binary() -> str:
    found = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(found).exists():
        sys.exit("Go is needed to build the load generator and the backend (not on PATH)")
    return found


def go_env() -> dict[str, str]:
    return {**os.environ, "GOBIN": str(BIN), "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}


def ensure_built(name: str, folder: str) -> Path:
    """`go build` of benchmarks/router/<folder> into .cache/bench-bin/<name>, when stale."""
    source = HERE / folder
    binary = BIN / name
    newest = max(p.stat().st_mtime for p in source.iterdir())
    if binary.exists() and binary.stat().st_mtime >= newest:
        return binary
    BIN.mkdir(parents=True, exist_ok=True)
    log(f"building {folder} into {binary}")
    subprocess.run(
        [go_binary(), "build", "-o", str(binary), "."], cwd=source, env=go_env(), check=True
    )
    return binary


def ensure_vegeta() -> Path:
    vegeta = BIN / "vegeta"
    stamp = BIN / "vegeta.version"
    if vegeta.exists() and stamp.exists() and stamp.read_text().strip() == VEGETA_VERSION:
        return vegeta
    BIN.mkdir(parents=True, exist_ok=True)
    log(f"installing vegeta {VEGETA_VERSION} into {BIN} (go install, Go module proxy)")
    subprocess.run(
        [go_binary(), "install", f"{VEGETA_MODULE}@{VEGETA_VERSION}"], env=go_env(), check=True
    )
    stamp.write_text(VEGETA_VERSION + "\n")
    return vegeta


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


def ensure_nginx() -> str:
    found = find_nginx()
    if found:
        return found
    prefix: list[str] = []
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            sys.exit("nginx is not installed, and installing it needs root or sudo")
        prefix = ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*prefix, "apt-get", "install", "-y", "--no-install-recommends", "nginx"]
    log("installing nginx: " + " ".join(install))
    if subprocess.run(install, env=env).returncode != 0:
        subprocess.run([*prefix, "apt-get", "update"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    found = find_nginx()
    if not found:
        sys.exit("apt-get installed nginx, but no nginx binary was found")
    return found


def nginx_version(nginx: str) -> str:
    result = subprocess.run([nginx, "-v"], capture_output=True, text=True)
    return (result.stderr or result.stdout).strip().removeprefix("nginx version: ")


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(port: int, path: str, timeout: float = 2.0) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, BODY, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def wait_ready(port: int, path: str, process: subprocess.Popen[bytes], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(OSError, http.client.HTTPException):
            if post(port, path) == 200:
                return True
        time.sleep(0.1)
    return False


def stop(process: subprocess.Popen[bytes]) -> None:
    """End a child started in its own session, and whatever it started, by its process group."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    else:  # the leader is gone; members of its group may not be
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its live descendants."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += ticks.get(current, 0)
        todo.extend(child for child, parent in parents.items() if parent == current)
    return total / CLK_TCK


def core_times() -> dict[int, tuple[int, int]]:
    """(busy, total) jiffies per core, from /proc/stat."""
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            numbers = [int(v) for v in values[:8]]
            idle = numbers[3] + numbers[4]
            times[int(name[3:])] = (sum(numbers) - idle, sum(numbers))
    return times


def busy_fractions(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]
) -> dict[int, float]:
    fractions = {}
    for core, (busy, total) in after.items():
        busy0, total0 = before.get(core, (0, 0))
        fractions[core] = round((busy - busy0) / max(1, total - total0), 3)
    return fractions


# --------------------------------------------------------------------------- load


@dataclass
class Target:
    name: str
    label: str
    port: int
    path: str
    process: subprocess.Popen[bytes]
    alive: bool = True
    note: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


@dataclass
class Run:
    """One fixed-rate run: its summary and what is needed to merge it with others."""

    summary: dict[str, Any]
    merge: Any


def quantiles(buckets: dict[float, float], count: float, largest: float) -> dict[str, float]:
    ordered = sorted(buckets.items())

    def at(q: float) -> float:
        rank, seen = max(1, math.ceil(q * count)), 0.0
        for value, n in ordered:
            seen += n
            if seen >= rank:
                return min(value, largest)
        return largest

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "p999": at(0.999)}


class Loadgen:
    """benchmarks/router/loadgen: one JSON object per run, histograms merged here."""

    name = "loadgen (benchmarks/router/loadgen)"

    def __init__(self, binary: Path, work: Path, timeout_s: int, max_conns: int) -> None:
        self.binary, self.body = binary, work / "body.json"
        self.body.write_bytes(BODY)
        self.timeout_s, self.max_conns = timeout_s, max_conns

    def command(self, target: Target, rate: int, seconds: float) -> list[str]:
        return [
            str(self.binary),
            f"-url={target.url}",
            f"-body={self.body}",
            f"-rate={rate}",
            f"-duration={seconds}s",
            f"-timeout={self.timeout_s}s",
            f"-max-conns={self.max_conns}",
        ]

    def collect(self, stdout: bytes, rate: int) -> Run:
        raw = json.loads(stdout)
        latency = raw["latency_ms"]
        summary = {
            "target_rps": rate,
            "requests": raw["requests"],
            "success": raw["success"],
            "sent_rps": round(raw["sent_rps"], 1),
            "throughput_rps": round(raw["throughput_rps"], 1),
            "mean_ms": latency["mean"],
            "p50_ms": latency["p50"],
            "p99_ms": latency["p99"],
            "p999_ms": latency["p999"],
            "max_ms": latency["max"],
            "schedule_p99_ms": raw["schedule_latency_ms"]["p99"],
            "conns": raw["conns"],
            "refused_mean_ms": raw.get("refused_latency_ms", {}).get("mean"),
            "refused_p99_ms": raw.get("refused_latency_ms", {}).get("p99"),
            "status_codes": raw["status_codes"],
            "errors": [f"{e} (x{n})" for e, n in sorted(raw["errors"].items())][:5],
        }
        return Run(summary, raw)

    def merged(self, runs: list[Run]) -> dict[str, float]:
        buckets: collections.Counter[float] = collections.Counter()
        for run in runs:
            for value, count in run.merge["latency_hist_ns"]:
                buckets[value] += count
        count = sum(buckets.values())
        if not count:
            return {"mean_ms": math.nan, "p50_ms": math.nan, "p99_ms": math.nan}
        largest = max(run.merge["latency_max_ns"] for run in runs)
        total = sum(run.merge["latency_sum_ns"] for run in runs)
        q = quantiles(dict(buckets), count, largest)
        return {
            "mean_ms": total / count / 1e6,
            **{f"{k}_ms": v / 1e6 for k, v in q.items()},
            "max_ms": largest / 1e6,
        }


class Vegeta:
    """vegeta attack | results file; vegeta report -type=json merges files itself."""

    name = f"vegeta {VEGETA_VERSION}"

    def __init__(self, binary: Path, work: Path, timeout_s: int, max_conns: int) -> None:
        self.binary, self.work = binary, work
        body = work / "body.json"
        body.write_bytes(BODY)
        self.body, self.timeout_s, self.max_conns = body, timeout_s, max_conns

    def command(self, target: Target, rate: int, seconds: float) -> list[str]:
        targets = self.work / f"targets-{target.name}.txt"
        targets.write_text(f"POST {target.url}\nContent-Type: application/json\n@{self.body}\n")
        self.out = self.work / f"{target.name}-{rate}-{time.monotonic_ns()}.bin"
        return [
            str(self.binary),
            "attack",
            "-format=http",
            f"-targets={targets}",
            f"-rate={rate}/1s",
            f"-duration={seconds}s",
            f"-timeout={self.timeout_s}s",
            f"-max-workers={self.max_conns}",
            f"-output={self.out}",
        ]

    def report(self, files: list[Path]) -> dict[str, Any]:
        result = subprocess.run(
            [str(self.binary), "report", "-type=json", *map(str, files)],
            capture_output=True,
            check=True,
        )
        return dict(json.loads(result.stdout))

    def collect(self, stdout: bytes, rate: int) -> Run:
        raw = self.report([self.out])
        latencies = raw["latencies"]
        summary = {
            "target_rps": rate,
            "requests": raw["requests"],
            "success": raw["success"],
            "sent_rps": round(raw["rate"], 1),
            "throughput_rps": round(raw["throughput"], 1),
            "mean_ms": latencies["mean"] / 1e6,
            "p50_ms": latencies["50th"] / 1e6,
            "p99_ms": latencies["99th"] / 1e6,
            "max_ms": latencies["max"] / 1e6,
            "status_codes": raw.get("status_codes") or {},
            "errors": (raw.get("errors") or [])[:5],
        }
        return Run(summary, self.out)

    def merged(self, runs: list[Run]) -> dict[str, float]:
        latencies = self.report([run.merge for run in runs])["latencies"]
        for run in runs:
            run.merge.unlink(missing_ok=True)
        return {
            "mean_ms": latencies["mean"] / 1e6,
            "p50_ms": latencies["50th"] / 1e6,
            "p99_ms": latencies["99th"] / 1e6,
            "max_ms": latencies["max"] / 1e6,
        }


def passes(summary: dict[str, Any]) -> bool:
    rate = summary["target_rps"]
    return bool(
        summary["success"] >= 0.999
        and summary["sent_rps"] >= 0.98 * rate
        and summary["throughput_rps"] >= 0.98 * rate
    )


@dataclass
class Harness:
    generator: Loadgen | Vegeta
    work: Path
    pin_load: list[str]
    pin_proxy: list[str]
    backend_port: int = 0
    backend: subprocess.Popen[bytes] | None = None
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(
        self,
        command: list[str],
        log_file: Path,
        pin: list[str],
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        with log_file.open("wb") as out:
            process = subprocess.Popen(
                [*pin, *command],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        self.children.append(process)
        return process

    def scored(self) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.backend_port, timeout=5)
        try:
            connection.request("GET", "/stats")
            return int(json.loads(connection.getresponse().read())["scored"])
        finally:
            connection.close()

    def attack(self, target: Target, rate: int, seconds: float) -> Run:
        """One fixed-rate run of the load generator, pinned, with CPU and backend counts."""
        assert self.backend is not None
        errors = self.work / "generator.err"
        scored_before = self.scored()
        proxy_before = tree_cpu_seconds(target.process.pid)
        backend_before = tree_cpu_seconds(self.backend.pid)
        cores_before, wall_before = core_times(), time.monotonic()
        with errors.open("wb") as err:
            process = subprocess.Popen(
                [*self.pin_load, *self.generator.command(target, rate, seconds)],
                stdout=subprocess.PIPE,
                stderr=err,
            )
            assert process.stdout is not None
            stdout = process.stdout.read()
            process.stdout.close()
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - wall_before
        busy = busy_fractions(cores_before, core_times())
        if process.returncode != 0:
            sys.exit(f"the load generator failed:\n{errors.read_text()[-2000:]}")
        backend_cpu = tree_cpu_seconds(self.backend.pid) - backend_before
        proxy_cpu = (
            max(0.0, tree_cpu_seconds(target.process.pid) - proxy_before)
            if target.process is not self.backend
            else 0.0
        )
        run = self.generator.collect(stdout, rate)
        load_cpu = usage.ru_utime + usage.ru_stime
        run.summary.update(
            load_cpu_s=load_cpu,
            backend_cpu_s=backend_cpu,
            proxy_cpu_s=proxy_cpu,
            backend_scored=self.scored() - scored_before,
            wall_s=round(wall, 3),
            # Shares of a core: each core's busy time (anyone's) and what our processes used.
            core_busy={str(core): fraction for core, fraction in busy.items()},
            load_side_share=round((load_cpu + backend_cpu) / wall, 3),
            proxy_share=round(proxy_cpu / wall, 3),
        )
        run.summary["passes"] = passes(run.summary)
        return run


# --------------------------------------------------------------------------- targets


def start_backend(harness: Harness, binary: Path) -> Target:
    log_file = harness.work / "backend.log"
    with log_file.open("wb") as errors:
        process = subprocess.Popen(
            [*harness.pin_load, str(binary), "-listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=errors,
            start_new_session=True,
        )
    harness.children.append(process)
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if not line:
        sys.exit("the backend did not start: " + log_file.read_text()[-2000:])
    harness.backend, harness.backend_port = process, int(line.rsplit(":", 1)[1])
    target = Target("direct", "backend direct", harness.backend_port, "/score", process)
    if not wait_ready(target.port, target.path, process, 10):
        sys.exit("the backend does not answer: " + log_file.read_text()[-2000:])
    return target


NGINX_CONF = """\
worker_processes 1;
{user}
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    upstream backend {{
        server 127.0.0.1:{backend_port};
        keepalive 512;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /score {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location = /refuse {{ return 503; }}  # the refusal floor (refusal_phase)
    }}
}}
"""


def start_nginx(harness: Harness, nginx: str) -> Target:
    """nginx as most would set it up to proxy: one worker, keep-alive to the upstream, no log."""
    prefix = harness.work / "nginx"
    prefix.mkdir()
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            # As root, nginx's worker would switch to "nobody"; keep it as the caller.
            user="user root;" if os.geteuid() == 0 else "",
            prefix=prefix,
            port=port,
            backend_port=harness.backend_port,
        )
    )
    log_file = prefix / "stdout.log"
    command = [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    process = harness.spawn(command, log_file, harness.pin_proxy)
    target = Target("nginx", f"nginx {nginx_version(nginx)}", port, "/score", process)
    if not wait_ready(port, "/score", process, 15):
        errors = prefix / "error.log"
        text = errors.read_text() if errors.exists() else ""
        sys.exit(f"nginx did not start:\n{log_file.read_text()[-1500:]}\n{text[-1500:]}")
    return target


ROUTER_CONF = """\
# benchmarks/router: one deployment, a static backend, no auth, a queue that never limits.
listen: 127.0.0.1:{port}
deployments:
  - name: {name}
    backends: [http://127.0.0.1:{backend_port}]
    max_concurrent_requests_per_instance: {concurrency}
    request_timeout_ms: 5000
    max_queue_wait_ms: 500
    auth: {{mode: none}}
    scale_settings: {{type: fixed, min_instances: 1, max_instances: 1}}
"""


def router_command(args: argparse.Namespace) -> list[str]:
    if args.router_cmd:
        return str(args.router_cmd).split()
    found = shutil.which("reconciler")
    return [found] if found else [sys.executable, "-m", "reconciler"]


def router_available(command: list[str]) -> tuple[bool, str]:
    try:
        result = subprocess.run(
            [*command, "router", "serve", "--help"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, str(error)
    text = (result.stdout + result.stderr).strip()
    return result.returncode == 0, text.splitlines()[-1] if text else ""


def start_router(
    harness: Harness,
    command: list[str],
    concurrency: int,
    name: str = "router",
    env: dict[str, str] | None = None,
) -> Target | str:
    folder = harness.work / name
    folder.mkdir()
    port = free_port()
    config = folder / "router.yaml"
    config.write_text(
        ROUTER_CONF.format(
            port=port, name=DEPLOYMENT, backend_port=harness.backend_port, concurrency=concurrency
        )
    )
    log_file = folder / "router.log"
    process = harness.spawn(
        [*command, "router", "serve", "--config", str(config)], log_file, harness.pin_proxy, env
    )
    path = f"/api/v1/service/{DEPLOYMENT}/score"
    if not wait_ready(port, path, process, 30):
        stop(process)
        return "no 200 within 30 s: " + " ".join(log_file.read_text()[-1000:].split())
    return Target(name, name, port, path, process)


def reference_tree(revision: str) -> tuple[str, Path]:
    """The `reconciler` package of another git revision, extracted under .cache/bench-ref/, to
    run as a second router in the same run (an alternative measured against this tree)."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", revision],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    folder = ROOT / ".cache" / "bench-ref" / commit
    if not (folder / "reconciler").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "reconciler", "schemas", "templates"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return commit, folder


# --------------------------------------------------------------------------- phases


def nice(rate: float) -> int:
    """Round to two significant digits (at least 100)."""
    magnitude: int = 10 ** max(2, len(str(int(rate))) - 2)
    return max(100, round(rate / magnitude) * magnitude)


def check_alive(target: Target) -> bool:
    if target.process.poll() is not None:
        target.alive = False
        target.note = f"exited with {target.process.returncode} during the run"
        return False
    with contextlib.suppress(OSError, http.client.HTTPException):
        if post(target.port, target.path, timeout=5) == 200:
            return True
    if not wait_ready(target.port, target.path, target.process, 10):
        target.alive = False
        target.note = "stopped answering after an overload step"
        return False
    return True


def latency_phase(
    harness: Harness, targets: list[Target], rates: list[int], seconds: float, rounds: int
) -> dict[str, dict[int, dict[str, Any]]]:
    results: dict[str, dict[int, dict[str, Any]]] = {t.name: {} for t in targets}
    for rate in rates:
        runs: dict[str, list[Run]] = {t.name: [] for t in targets}
        for round_ in range(rounds):
            for target in targets if round_ % 2 == 0 else list(reversed(targets)):
                if not target.alive:
                    continue
                run = harness.attack(target, rate, seconds)
                runs[target.name].append(run)
                if target.process.poll() is not None:
                    target.alive = False
                    target.note = f"exited with {target.process.returncode} during the run"
                s = run.summary
                log(
                    f"latency: {target.name:6} at {rate} rps, round {round_ + 1}/{rounds}: "
                    f"mean {s['mean_ms']:.3f} ms, p99 {s['p99_ms']:.3f} ms, "
                    f"success {s['success']:.4f}"
                )
                time.sleep(0.3)
        for target in targets:
            done = runs[target.name]
            if not done:
                continue
            requests = sum(r.summary["requests"] for r in done)
            summary: dict[str, Any] = {
                "target_rps": rate,
                "rounds": len(done),
                "requests": requests,
                "success": sum(r.summary["success"] * r.summary["requests"] for r in done)
                / max(1, requests),
                "sent_rps": min(r.summary["sent_rps"] for r in done),
                "throughput_rps": min(r.summary["throughput_rps"] for r in done),
                **harness.generator.merged(done),
                "round_means_ms": [round(r.summary["mean_ms"], 4) for r in done],
                "round_p99s_ms": [round(r.summary["p99_ms"], 4) for r in done],
                "backend_scored": sum(r.summary["backend_scored"] for r in done),
                "errors": [e for r in done for e in r.summary["errors"]][:5],
            }
            summary["passes"] = passes(summary)
            for key in ("proxy_share", "load_side_share"):
                summary[key] = round(sum(r.summary[key] for r in done) / len(done), 3)
            summary["core_busy"] = {
                core: round(sum(r.summary["core_busy"][core] for r in done) / len(done), 3)
                for core in done[0].summary["core_busy"]
            }
            for key in ("proxy", "backend", "load"):
                cpu = sum(r.summary[f"{key}_cpu_s"] for r in done)
                summary[f"{key}_cpu_us_per_request"] = round(cpu / max(1, requests) * 1e6, 1)
            results[target.name][rate] = summary
    return results


def step(
    harness: Harness, target: Target, rate: int, seconds: float, retries: int
) -> dict[str, Any]:
    attempts = []
    for _ in range(1 + retries):
        result = harness.attack(target, rate, seconds).summary
        if isinstance(harness.generator, Vegeta):
            harness.generator.out.unlink(missing_ok=True)
        attempts.append(result)
        log(
            f"max: {target.name:6} at {rate:>6} rps: sent {result['sent_rps']:.0f}, "
            f"throughput {result['throughput_rps']:.0f}, success {result['success']:.4f}, "
            f"p99 {result['p99_ms']:.2f} ms -> {'pass' if result['passes'] else 'FAIL'}"
        )
        time.sleep(1.0)
        if not check_alive(target) or result["passes"]:
            break
    best = next((a for a in attempts if a["passes"]), attempts[-1])
    return {**best, "attempts": len(attempts)}


def max_phase(
    harness: Harness, target: Target, args: argparse.Namespace
) -> tuple[int, list[dict[str, Any]]]:
    steps: list[dict[str, Any]] = []
    passed, failed = 0, None
    rate = args.start_rps
    while rate <= args.limit_rps and target.alive:
        result = step(harness, target, rate, args.step_seconds, args.retries)
        steps.append(result)
        if not result["passes"]:
            failed = rate
            break
        passed = rate
        rate = nice(rate * args.factor)
    for _ in range(args.bisect):
        if failed is None or not target.alive or failed - passed <= max(100, 0.03 * passed):
            break
        middle = nice((passed + failed) / 2)
        if not passed < middle < failed:
            middle = (passed + failed) // 200 * 100
        if not passed < middle < failed:
            break
        result = step(harness, target, middle, args.step_seconds, args.retries)
        steps.append(result)
        if result["passes"]:
            passed = middle
        else:
            failed = middle
    return passed, steps


def overload_phase(
    harness: Harness, target: Target, max_rps: int, seconds: float
) -> list[dict[str, Any]]:
    """Offered load past the proxy's max: what it still serves (goodput), how much it refuses
    (429/503) and how fast, and the latency of what it admitted."""
    rows: list[dict[str, Any]] = []
    for factor in OVERLOAD_FACTORS:
        if not target.alive or max_rps <= 0:
            break
        rate = nice(max_rps * factor)
        run = harness.attack(target, rate, seconds).summary
        codes = run["status_codes"]
        requests = max(1, run["requests"])
        ok = round(run["success"] * run["requests"])
        refused = sum(n for code, n in codes.items() if code in ("429", "503"))
        row = {
            "factor": factor,
            "offered_rps": rate,
            "sent_rps": run["sent_rps"],
            "goodput_rps": run["throughput_rps"],
            "goodput_share": run["throughput_rps"] / max_rps,
            "refused_share": refused / requests,
            "refused_mean_ms": run.get("refused_mean_ms"),
            "refused_p99_ms": run.get("refused_p99_ms"),
            "failed_share": max(0, requests - ok - refused) / requests,
            "admitted_p50_ms": run["p50_ms"],
            "admitted_p99_ms": run["p99_ms"],
            "proxy_share": run["proxy_share"],
            "core_busy": run["core_busy"],
            "errors": run["errors"],
        }
        log(
            f"overload: {target.name} at {rate} rps ({factor}x max): goodput "
            f"{row['goodput_rps']:.0f} ({row['goodput_share']:.0%} of max), refused "
            f"{row['refused_share']:.0%}, other failures {row['failed_share']:.1%}, admitted p99 "
            f"{row['admitted_p99_ms']:.1f} ms"
        )
        rows.append(row)
        time.sleep(1.0)
        check_alive(target)
    return rows


def against_baseline(
    rows: list[dict[str, Any]],
    direct: dict[str, dict[str, Any]],
    refusal: dict[str, Any] | None,
) -> None:
    """Add to each overload row what issue 30's goal reads: the admitted p99 minus the direct
    backend's p99 at the latency phase's rate nearest the row's goodput (the rate the backend
    saw), and the goodput's share of max over the single-core bound of the same run."""
    bound = (refusal or {}).get("goodput_bound_2x")
    for row in rows:
        if direct:
            rate = min(direct, key=lambda r: abs(int(r) - row["goodput_rps"]))
            row["baseline_rate"] = int(rate)
            row["admitted_p99_added_ms"] = row["admitted_p99_ms"] - direct[rate]["p99_ms"]
        row["goodput_bound"] = bound
        row["goodput_of_bound"] = row["goodput_share"] / bound if bound else None


def refusal_phase(
    harness: Harness, pairs: dict[str, tuple[Target, Target]], rate: int, seconds: float
) -> dict[str, dict[str, Any]]:
    """Each proxy serving every request, then refusing every one (nginx's `return 503`, the
    router with admission control refusing all), at `rate`: its CPU per served request (s) and
    per refusal (r). `pairs`: by name, the serving and the refusing target.

    Why: on a saturated core, at 2x the max rate M = 1/s, the S requests served and the 2M - S
    refused take S*s + (2M - S)*r <= 1 s of CPU, so goodput S/M is at most (1 - 2x) / (1 - x)
    for x = r / s (0 once x >= 1/2), whatever the shedding policy: 90 % of max at 2x needs a
    refusal for under 1/11 of a served request's cost. Measured at the router's max rate, where
    its loop batches events as it does when overloaded (at low rates each request pays a
    wake-up of its own, and r and s look alike)."""
    rows: dict[str, dict[str, Any]] = {}
    for name, (serving, refusing) in pairs.items():
        served_run = harness.attack(serving, rate, seconds).summary
        time.sleep(0.5)
        refused_run = harness.attack(refusing, rate, seconds).summary
        time.sleep(0.5)
        requests = max(1, refused_run["requests"])
        codes = refused_run["status_codes"]
        refused = sum(n for code, n in codes.items() if code in ("429", "503"))
        served_us = served_run["proxy_cpu_s"] / max(1, served_run["requests"]) * 1e6
        refusal_us = refused_run["proxy_cpu_s"] / requests * 1e6
        x = refusal_us / served_us if served_us else None
        rows[name] = {
            "rate": rate,
            "refused_share": refused / requests,
            "served_cpu_us": round(served_us, 1),
            "refusal_cpu_us": round(refusal_us, 1),
            "refusal_over_served": None if x is None else round(x, 3),
            "goodput_bound_2x": None if x is None else round(max(0.0, (1 - 2 * x) / (1 - x)), 3),
        }
        log(
            f"refusal floor: {name} at {rate} rps: {served_us:.1f} us of CPU per served "
            f"request, {refusal_us:.1f} us per refusal ({refused / requests:.1%} refused)"
        )
    return rows


# --------------------------------------------------------------------------- report


def ms(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.3f} ms" if signed else f"{value:.3f} ms"


def rps(value: int | None, bounded: bool = False) -> str:
    if value is None:
        return "n/a"
    return (">= " if bounded else "") + f"{value:,}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "NO")


def render(results: dict[str, Any]) -> str:
    targets = results["targets"]
    rates = results["settings"]["latency_rates"]
    machine = results["machine"]
    lines = [
        "## Router benchmark: fixed-rate (open-loop) load on loopback",
        "",
        f"{machine['cores']} cores ({machine['cpu']}); {machine['pinning']}; load generator "
        f"{results['settings']['generator']}; load average {machine['loadavg_start']} at start, "
        f"{machine['loadavg_end']} at end; {results['seconds']:.0f} s. CPU not charged to this "
        f"run's processes (other users, kernel): core 0 {machine['others_core0']:.0%}, core 1 "
        f"{machine['others_core1']:.0%} on average.",
        "",
    ]
    header = ["", "max sustained rps", "at the first failing rate"]
    for rate in rates:
        header += [f"mean @{rate:,} (added)", f"p99 @{rate:,} (added)"]
    header += [f"proxy CPU/req @{GOAL_AT:,}", "one-core capacity from CPU"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in targets.items():
        if entry.get("skipped"):
            lines.append(f"| {entry['label']} | skipped: {entry['skipped']} |")
            continue
        row = [entry["label"], rps(entry.get("max_rps"), entry.get("max_bounded_by_harness"))]
        limit = entry.get("ceiling")
        if limit:
            cell = (
                f"{limit['rate']:,}: core 0 {limit['core0_busy']:.0%}, "
                f"core 1 {limit['core1_busy']:.0%}"
            )
            if limit["proxy_share"] is not None:
                cell += f" ({name} {limit['proxy_share']:.0%})"
            row.append(cell)
        else:
            row.append("none failed")
        for rate in rates:
            at = entry["latency"].get(str(rate))
            added = entry.get("added", {}).get(str(rate))
            for key in ("mean", "p99"):
                if at is None:
                    row.append("n/a")
                    continue
                cell = ms(at[f"{key}_ms"])
                if added:
                    cell += f" ({ms(added[f'{key}_ms'], signed=True)})"
                if not at["passes"]:
                    cell += " !"
                row.append(cell)
        at_goal = entry["latency"].get(str(GOAL_AT))
        if name == "direct" or at_goal is None:
            row += ["-", "-"]
        else:
            capacity = entry.get("cpu_capacity_rps")
            row += [
                f"{at_goal['proxy_cpu_us_per_request']:.1f} us",
                f"~{capacity:,}" if capacity else "n/a",
            ]
        lines.append("| " + " | ".join(row) + " |")

    def per_request(key: str) -> str:
        return ", ".join(
            f"{n} {e['latency'][str(GOAL_AT)][key]:.1f} us"
            for n, e in targets.items()
            if not e.get("skipped") and str(GOAL_AT) in e["latency"]
        )

    overloaded = [(n, e) for n, e in targets.items() if e.get("overload")]
    if overloaded:
        lines += [
            "",
            "Overload, offered load past the proxy's own max sustained rps (one run of "
            f"{results['settings']['overload_seconds']:.0f} s each):",
            "",
            "| | offered | goodput (share of max) | of the single-core bound | refused 429/503 "
            "| time to refusal mean / p99 | other failures | admitted p50 / p99 | admitted p99 "
            "added | proxy's core share |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, entry in overloaded:
            for row in entry["overload"]:
                bound, of_bound = row.get("goodput_bound"), row.get("goodput_of_bound")
                lines.append(
                    f"| {name} | {row['offered_rps']:,} ({row['factor']}x) | "
                    f"{row['goodput_rps']:,.0f} ({row['goodput_share']:.0%}) | "
                    + (f"{of_bound:.2f} of {bound:.0%} | " if of_bound is not None else "n/a | ")
                    + f"{row['refused_share']:.1%} | {ms(row['refused_mean_ms'])} / "
                    f"{ms(row['refused_p99_ms'])} | {row['failed_share']:.2%} | "
                    f"{ms(row['admitted_p50_ms'])} / {ms(row['admitted_p99_ms'])} | "
                    f"{ms(row.get('admitted_p99_added_ms'), signed=True)} | "
                    f"{row['proxy_share']:.0%} |"
                )
    refusing = [(n, e["refusal"]) for n, e in targets.items() if e.get("refusal")]
    if refusing:
        lines += [
            "",
            f"Refusal floor at the router's max ({refusing[0][1]['rate']:,} rps): each proxy "
            "serving, then refusing every request (nginx `return 503`, the router's admission "
            "control refusing all); a refusal costing x of a served request bounds goodput at "
            "2x max to (1 - 2x) / (1 - x) of max, whatever the shedding policy (90 % needs "
            "x <= 0.09):",
            "",
            "| | refused | CPU per refusal | CPU per served request | x | goodput bound at 2x |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in refusing:
            x, bound = row["refusal_over_served"], row["goodput_bound_2x"]
            lines.append(
                f"| {name} | {row['refused_share']:.1%} | {row['refusal_cpu_us']:.1f} us | "
                f"{row['served_cpu_us']} us | {'n/a' if x is None else f'{x:.2f}'} | "
                f"{'n/a' if bound is None else f'{bound:.0%}'} |"
            )
    lines += [
        "",
        "Latency: request sent to response read, as the load generator sees it; (added) is the "
        "proxy's figure minus the direct backend's at the same rate. '!': that rate was not "
        "sustained. '>=': the max of the harness itself (core 0: load generator + backend) was "
        "reached first, so the proxy's own max is higher. 'At the first failing rate': how busy "
        "each core was (anyone's use) and the proxy's own share.",
        f"Core 0 CPU per request @{GOAL_AT:,}: backend {per_request('backend_cpu_us_per_request')}"
        f"; load generator {per_request('load_cpu_us_per_request')}.",
        "",
        "| goal | router | nginx (reference) | target | router meets it |",
        "|---|---|---|---|---|",
    ]
    noisy = " (noisy run)" if results["noisy"] else ""
    for goal in results["goals"]:
        shown = verdict(goal["met"])
        lines.append(
            f"| {goal['goal']} | {goal['router']} | {goal['nginx']} | {goal['target']} "
            f"| {shown}{noisy if goal['met'] is not None else ''} |"
        )
    for name, entry in targets.items():
        if entry.get("note"):
            lines.append(f"\nNote, {name}: {entry['note']}")
    for warning in results["warnings"]:
        lines.append(f"\nWarning: {warning}")
    return "\n".join(lines)


def goals(targets: dict[str, Any]) -> list[dict[str, Any]]:
    def figure(name: str, getter: Callable[[dict[str, Any]], Any]) -> Any:
        entry = targets.get(name)
        if not entry or entry.get("skipped"):
            return None
        with contextlib.suppress(KeyError, TypeError):
            return getter(entry)
        return None

    def sustained(entry: dict[str, Any]) -> bool:
        return bool(entry["latency"][str(GOAL_AT)]["passes"])

    rows: list[dict[str, Any]] = []
    specs: list[
        tuple[str, Callable[[dict[str, Any]], Any], str, Callable[..., str], Callable[..., bool]]
    ] = [
        (
            "max sustained rps, one core",
            lambda e: e["max_rps"],
            f">= {GOAL_MAX_RPS:,}",
            lambda v, e: rps(v, e.get("max_bounded_by_harness")),
            lambda v, e: v >= GOAL_MAX_RPS,
        ),
        (
            f"mean added latency @{GOAL_AT:,} rps",
            lambda e: e["added"][str(GOAL_AT)]["mean_ms"],
            f"<= {GOAL_MEAN_ADDED_MS} ms",
            lambda v, e: ms(v, signed=True),
            lambda v, e: v <= GOAL_MEAN_ADDED_MS and sustained(e),
        ),
        (
            f"p99 added latency @{GOAL_AT:,} rps",
            lambda e: e["added"][str(GOAL_AT)]["p99_ms"],
            f"<= {GOAL_P99_ADDED_MS} ms",
            lambda v, e: ms(v, signed=True),
            lambda v, e: v <= GOAL_P99_ADDED_MS and sustained(e),
        ),
    ]
    for name, getter, target, fmt, test in specs:
        values = {n: figure(n, getter) for n in ("router", "nginx")}
        rows.append(
            {
                "goal": name,
                "router_value": values["router"],
                "nginx_value": values["nginx"],
                **{n: "n/a" if v is None else fmt(v, targets[n]) for n, v in values.items()},
                "target": target,
                "met": None
                if values["router"] is None
                else test(values["router"], targets["router"]),
            }
        )
    goodput = figure(
        "router",
        lambda e: next(r["goodput_share"] for r in e["overload"] if r["factor"] == 2.0),
    )
    rows.append(
        {
            "goal": "goodput at 2x max offered, share of max",
            "router_value": goodput,
            "nginx_value": None,
            "router": "n/a" if goodput is None else f"{goodput:.0%}",
            "nginx": "-",
            "target": f">= {GOAL_OVERLOAD_GOODPUT:.0%}",
            "met": None if goodput is None else goodput >= GOAL_OVERLOAD_GOODPUT,
        }
    )
    # Issue 30: at 2x, the admitted p99 added and goodput against the bound, each a row, and
    # the goal itself, met only when both are.
    at_2x = figure("router", lambda e: next(r for r in e["overload"] if r["factor"] == 2.0))
    added = None if at_2x is None else at_2x.get("admitted_p99_added_ms")
    of_bound = None if at_2x is None else at_2x.get("goodput_of_bound")
    p99_met = None if added is None else added <= GOAL_OVERLOAD_P99_ADDED_MS
    bound_met = None if of_bound is None else of_bound >= GOAL_OVERLOAD_OF_BOUND
    rows += [
        {
            "goal": "admitted p99 added at 2x max offered",
            "router_value": added,
            "nginx_value": None,
            "router": ms(added, signed=True),
            "nginx": "-",
            "target": f"<= {GOAL_OVERLOAD_P99_ADDED_MS:.0f} ms",
            "met": p99_met,
        },
        {
            "goal": "goodput at 2x max offered, share of the single-core bound (same run)",
            "router_value": of_bound,
            "nginx_value": None,
            "router": "n/a" if of_bound is None else f"{of_bound:.2f}",
            "nginx": "-",
            "target": f">= {GOAL_OVERLOAD_OF_BOUND:.2f}",
            "met": bound_met,
        },
        {
            "goal": "issue 30: both of the two rows above",
            "router_value": None,
            "nginx_value": None,
            "router": "-",
            "nginx": "-",
            "target": "both",
            "met": None if p99_met is None or bound_met is None else p99_met and bound_met,
        },
    ]
    for name, key in (
        ("router / nginx max rps", "max_rps"),
        (f"router / nginx one-core capacity from CPU @{GOAL_AT:,}", "cpu_capacity_rps"),
    ):
        getter = operator.itemgetter(key)
        router_value = figure("router", getter)
        nginx_value = figure("nginx", getter)
        ratio = router_value / nginx_value if router_value and nginx_value else None
        shown = "n/a" if ratio is None else f"{ratio:.2f}"
        if (
            ratio is not None
            and key == "max_rps"
            and figure("nginx", lambda e: e["max_bounded_by_harness"])
        ):
            shown += " (nginx capped by the harness: at most this)"
        rows.append(
            {
                "goal": name,
                "router_value": ratio,
                "nginx_value": 1.0,
                "router": shown,
                "nginx": "1.00" if nginx_value else "n/a",
                "target": f">= {GOAL_NGINX_RATIO:.2f}",
                "met": None if ratio is None else ratio >= GOAL_NGINX_RATIO,
            }
        )
    return rows


# --------------------------------------------------------------------------- main


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--skip-router", action="store_true")
    parser.add_argument("--skip-nginx", action="store_true")
    parser.add_argument("--router-cmd", help="the reconciler command (default: reconciler)")
    parser.add_argument("--generator", choices=("loadgen", "vegeta"), default="loadgen")
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument(
        "--latency-rates",
        type=lambda text: [int(r) for r in text.split(",")],
        default=list(LATENCY_RATES),
        metavar="RPS,RPS",
        help=f"the latency phase's rates (default {','.join(map(str, LATENCY_RATES))}; the goals "
        f"read {GOAL_AT:,})",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--step-seconds", type=float, default=3.0)
    parser.add_argument("--start-rps", type=int, default=2000)
    parser.add_argument("--factor", type=float, default=1.6)
    parser.add_argument("--limit-rps", type=int, default=200_000)
    parser.add_argument("--bisect", type=int, default=3)
    parser.add_argument("--retries", type=int, default=1, help="more tries of a failed rate")
    parser.add_argument("--timeout", type=int, default=5, help="request timeout, seconds")
    parser.add_argument(
        "--max-conns", type=int, default=2000, help="the generator's cap on requests in flight"
    )
    parser.add_argument("--concurrency", type=int, default=1000, help="router's per-backend cap")
    parser.add_argument(
        "--overload-seconds", type=float, default=5.0, help="each overload row's run"
    )
    parser.add_argument(
        "--compare-ref",
        metavar="REVISION",
        help="also run the router of this git revision (e.g. main) as `router@<commit>`, "
        "every phase, in the same run",
    )
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="only the latency phase (added latency, CPU per request): no max search, no "
        "overload rows",
    )
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.latency_seconds, args.rounds, args.step_seconds = 2.0, 1, 2.0
        args.overload_seconds = 3.0
        args.factor, args.bisect, args.retries = 2.0, 1, 0
    return args


@contextlib.contextmanager
def stopping(children: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in reversed(children):
            stop(process)


def others(run: dict[str, Any], proxied: bool) -> tuple[float, float]:
    """Shares of core 0 and core 1 that our processes did not use during a run."""
    busy = run.get("core_busy", {})
    core0 = busy.get("0", 0.0) - run.get("load_side_share", 0.0)
    core1 = busy.get("1", 0.0) - (run.get("proxy_share", 0.0) if proxied else 0.0)
    return max(0.0, core0), max(0.0, core1)


def ceiling(steps: list[dict[str, Any]], proxied: bool) -> dict[str, Any] | None:
    """What the cores did at the lowest rate that failed."""
    failed = [s for s in steps if not s["passes"]]
    if not failed:
        return None
    lowest = min(failed, key=lambda s: s["target_rps"])
    other0, other1 = others(lowest, proxied)
    return {
        "rate": lowest["target_rps"],
        "core0_busy": lowest["core_busy"].get("0"),
        "core1_busy": lowest["core_busy"].get("1"),
        "proxy_share": lowest["proxy_share"] if proxied else None,
        "others_core0": round(other0, 3),
        "others_core1": round(other1, 3),
    }


def summarize(
    targets: list[Target],
    latency: dict[str, dict[int, dict[str, Any]]],
    maxima: dict[str, tuple[int, list[dict[str, Any]]]],
    warnings: list[str],
) -> dict[str, Any]:
    entries: dict[str, Any] = {}
    for target in targets:
        proxied = target.name != "direct"
        max_rps, steps = maxima.get(target.name, (None, []))
        limit = ceiling(steps, proxied)
        # Where it failed core 0 (load generator + backend) was full and the proxy's core was
        # not: the harness, not the proxy, set the max.
        bounded = bool(
            proxied
            and limit
            and (limit["core0_busy"] or 0) >= 0.9
            and (limit["core1_busy"] or 0) < 0.85
        )
        entry: dict[str, Any] = {
            "label": target.label,
            "url": target.url,
            "max_rps": max_rps,
            "max_bounded_by_harness": bounded,
            "ceiling": limit,
            "latency": {str(r): v for r, v in latency[target.name].items()},
            "steps": steps,
            "note": target.note,
        }
        if proxied:
            entry["added"] = {
                str(rate): {
                    "mean_ms": at["mean_ms"] - latency["direct"][rate]["mean_ms"],
                    "p99_ms": at["p99_ms"] - latency["direct"][rate]["p99_ms"],
                }
                for rate, at in latency[target.name].items()
                if rate in latency["direct"]
            }
            at_goal = latency[target.name].get(GOAL_AT)
            if at_goal and at_goal["proxy_cpu_us_per_request"] > 0:
                entry["cpu_capacity_rps"] = nice(1e6 / at_goal["proxy_cpu_us_per_request"])
            if limit and limit["others_core1"] > 0.1:
                warnings.append(
                    f"{target.name}: at {limit['rate']:,} rps, where it failed, other processes "
                    f"(or kernel work not charged to ours) took {limit['others_core1']:.0%} of "
                    "core 1: its max is understated"
                )
        for run in [*latency[target.name].values(), *steps]:
            successes = round(run["success"] * run["requests"])
            if run["backend_scored"] < successes:
                warnings.append(
                    f"{target.name} at {run['target_rps']} rps: {successes} successes but the "
                    f"backend scored only {run['backend_scored']}"
                )
        entries[target.name] = entry
    for name, entry in entries.items():
        if entry["max_bounded_by_harness"]:
            warnings.append(
                f"{name}: core 0 (load generator + backend) was full and {name} was not where it "
                f"failed: {name}'s own max is higher than shown"
                + (
                    "; the router / nginx max-rps ratio is an upper bound"
                    if name == "nginx"
                    else ""
                )
            )
    return entries


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    backend_binary = ensure_built("router-bench-backend", "backend")
    nginx = None if args.skip_nginx else ensure_nginx()
    cores = os.cpu_count() or 1
    if cores >= 2 and shutil.which("taskset"):
        pin_load, pin_proxy = ["taskset", "-c", "0"], ["taskset", "-c", "1"]
        pinning = "proxy pinned to core 1, load generator and backend to core 0"
    else:
        pin_load, pin_proxy = [], []
        pinning = "NOT pinned (needs 2 cores and taskset)"
    warnings: list[str] = []
    loadavg_start = loadavg()
    before = core_times()
    time.sleep(2)
    idle_busy = busy_fractions(before, core_times())
    if max(idle_busy.values()) > 0.15:
        warnings.append(
            "the machine was busy before the run started ("
            + ", ".join(f"core {c} {b:.0%}" for c, b in sorted(idle_busy.items()))
            + " in 2 s with nothing of this run going): the figures are noisy"
        )
    with tempfile.TemporaryDirectory(prefix="bench-router-") as folder:
        work = Path(folder)
        generator: Loadgen | Vegeta
        if args.generator == "vegeta":
            generator = Vegeta(ensure_vegeta(), work, args.timeout, args.max_conns)
        else:
            binary = ensure_built("router-bench-load", "loadgen")
            generator = Loadgen(binary, work, args.timeout, args.max_conns)
        harness = Harness(generator, work, pin_load, pin_proxy)
        with stopping(harness.children):
            targets = [start_backend(harness, backend_binary)]
            skipped: dict[str, str] = {}
            if nginx:
                targets.append(start_nginx(harness, nginx))
            else:
                skipped["nginx"] = "--skip-nginx"
            if args.skip_router:
                skipped["router"] = "--skip-router"
            else:
                command = router_command(args)
                ok, why = router_available(command)
                if not ok:
                    skipped["router"] = f"`router serve --help` failed: {why}"
                else:
                    router = start_router(harness, command, args.concurrency)
                    if isinstance(router, str):
                        skipped["router"] = router
                    else:
                        targets.append(router)
                    if args.compare_ref:
                        commit, tree = reference_tree(args.compare_ref)
                        name = f"router@{commit}"
                        env = {**os.environ, "PYTHONPATH": str(tree)}
                        other = start_router(
                            harness,
                            [sys.executable, "-m", "reconciler"],
                            args.concurrency,
                            name,
                            env,
                        )
                        if isinstance(other, str):
                            skipped[name] = other
                        else:
                            targets.append(other)
            for name, why in skipped.items():
                log(f"{name} skipped: {why}")

            for target in targets:  # warm-up: connections, caches, lazy imports
                harness.attack(target, 500, 1)
            latency = latency_phase(
                harness, targets, args.latency_rates, args.latency_seconds, args.rounds
            )
            maxima = {
                target.name: max_phase(harness, target, args)
                for target in targets
                if target.alive and not args.latency_only
            }
            overload = {
                target.name: overload_phase(
                    harness, target, maxima[target.name][0], args.overload_seconds
                )
                for target in targets
                if target.name.startswith("router") and target.name in maxima
            }
            refusals: dict[str, dict[str, Any]] = {}
            router_max = maxima.get("router", (0, []))[0]
            if router_max:
                pairs = {
                    t.name: (t, replace(t, path="/refuse")) for t in targets if t.name == "nginx"
                }
                refuser = start_router(
                    harness, [sys.executable, "-c", REFUSE_ALL], args.concurrency, "router-refusing"
                )
                if isinstance(refuser, Target):
                    pairs["router"] = (next(t for t in targets if t.name == "router"), refuser)
                else:
                    log(f"the refusing router did not start: {refuser}")
                refusals = refusal_phase(harness, pairs, router_max, args.latency_seconds)
            loadavg_end = loadavg()
            entries = summarize(targets, latency, maxima, warnings)
            for name, row in refusals.items():
                entries[name]["refusal"] = row
            for name, rows in overload.items():
                entries[name]["overload"] = rows
                against_baseline(rows, entries["direct"]["latency"], refusals.get("router"))
            shares = [
                others(run, entry_name != "direct")
                for entry_name, entry in entries.items()
                for run in [*entry["latency"].values(), *entry["steps"]]
            ]
            for name, why in skipped.items():
                entries[name] = {"label": name, "skipped": why, "latency": {}}

    results: dict[str, Any] = {
        "machine": {
            "cores": cores,
            "cpu": cpu_model(),
            "pinning": pinning,
            "loadavg_start": loadavg_start,
            "loadavg_end": loadavg_end,
            "busy_before_start": {str(c): b for c, b in sorted(idle_busy.items())},
            "others_core0": round(sum(a for a, _ in shares) / max(1, len(shares)), 3),
            "others_core1": round(sum(b for _, b in shares) / max(1, len(shares)), 3),
            "python": platform.python_version(),
        },
        "settings": {
            "generator": generator.name,
            "latency_rates": args.latency_rates,
            "latency_seconds": args.latency_seconds,
            "rounds": args.rounds,
            "step_seconds": args.step_seconds,
            "start_rps": args.start_rps,
            "factor": args.factor,
            "bisect": args.bisect,
            "retries": args.retries,
            "timeout_s": args.timeout,
            "max_conns": args.max_conns,
            "router_concurrency": args.concurrency,
            "overload_factors": list(OVERLOAD_FACTORS),
            "overload_seconds": args.overload_seconds,
            "compare_ref": args.compare_ref,
            "latency_only": args.latency_only,
            "body_bytes": len(BODY),
            "quick": args.quick,
            "pass_rule": ">= 99.9 % success; sent rate and throughput >= 98 % of the target",
        },
        "targets": entries,
        "warnings": warnings,
        "seconds": round(time.monotonic() - started, 1),
    }
    results["goals"] = goals(entries)
    # Other load on the machine, before the run or on the proxy's core where a proxy failed.
    results["noisy"] = max(idle_busy.values()) > 0.15 or any(
        (entry.get("ceiling") or {}).get("others_core1", 0) > 0.1
        for name, entry in entries.items()
        if name != "direct"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"\n(JSON: {args.json})")


if __name__ == "__main__":
    main()
