"""Request traces for the autoscaler simulation: the file format and the bundled traces.

A trace is the requests one model deployment receives: when each arrives and how long a replica
takes to answer it. `router.simulation` replays one; `reconciler router simulate --trace` takes a
file or the name of a bundled trace.

The file format is CSV with a header row and one request per row:

    timestamp_s,duration_s
    0.000,0.84
    0.412,1.31

`timestamp_s`: seconds from the start of the trace (>= 0; rows need not be sorted);
`duration_s`: seconds a replica works on the request (> 0). Blank lines and lines starting with
`#` are skipped. `parse` reports every bad row at once as `FILE:LINE: field: message`.

The bundled traces (`BUNDLED`) are generated, not shipped as data: each is a non-homogeneous
Poisson process of a fixed rate curve (requests per second over time) with log-normal durations
(mean 1 s), drawn from a random generator seeded with the trace's name, so a name always gives
the same requests. Pure: no I/O except `load`, which reads a file.
"""

from __future__ import annotations

import csv
import io
import math
import random
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.model import problems

HEADER = ("timestamp_s", "duration_s")
MEAN_DURATION_S = 1.0
_DURATION_SIGMA = 0.5  # of the log-normal; the mean stays MEAN_DURATION_S


@dataclass(frozen=True, order=True)
class Request:
    """One request of a trace: arrives `at` seconds into it, takes `duration` on a replica."""

    at: float
    duration: float


@dataclass(frozen=True)
class Trace:
    """A named list of requests, sorted by arrival."""

    name: str
    requests: tuple[Request, ...]

    @property
    def end(self) -> float:
        """When the last request arrives (0 for an empty trace)."""
        return self.requests[-1].at if self.requests else 0.0


class TraceError(Exception):
    """The trace file is unusable; `problems` holds every reason."""

    def __init__(self, found: Sequence[problems.Problem]) -> None:
        self.problems = list(found)
        super().__init__("\n".join(str(p) for p in self.problems))


# --- The file format ----------------------------------------------------------------------------


def parse(file: str, text: str) -> Trace:
    """The trace in CSV `text` (from `file`, for messages); TraceError with every bad row."""
    found: list[problems.Problem] = []
    requests: list[Request] = []
    header_seen = False
    rows = csv.reader(io.StringIO(text))
    for row in rows:
        line = rows.line_num
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        cells = [cell.strip() for cell in row]
        if not header_seen:
            header_seen = True
            if tuple(cells) != HEADER:
                found.append(
                    problems.Problem(
                        file, line, "header", f"expected {','.join(HEADER)}, got {','.join(cells)}"
                    )
                )
                raise TraceError(found)
            continue
        if len(cells) != len(HEADER):
            found.append(problems.Problem(file, line, "", f"expected 2 columns, got {len(cells)}"))
            continue
        at = _number(found, file, line, "timestamp_s", cells[0], positive=False)
        duration = _number(found, file, line, "duration_s", cells[1], positive=True)
        if at is not None and duration is not None:
            requests.append(Request(at, duration))
    if not header_seen:
        found.append(problems.Problem(file, 1, "header", f"expected {','.join(HEADER)}"))
    if found:
        raise TraceError(found)
    name = Path(file).stem
    return Trace(name, tuple(sorted(requests)))


def _number(
    found: list[problems.Problem], file: str, line: int, field: str, text: str, *, positive: bool
) -> float | None:
    try:
        value = float(text)
    except ValueError:
        found.append(problems.Problem(file, line, field, f"{text!r} is not a number"))
        return None
    if not math.isfinite(value):
        found.append(problems.Problem(file, line, field, f"{text!r} is not a finite number"))
        return None
    if positive and value <= 0:
        found.append(problems.Problem(file, line, field, f"must be > 0, got {text}"))
        return None
    if not positive and value < 0:
        found.append(problems.Problem(file, line, field, f"must be >= 0, got {text}"))
        return None
    return value


def dumps(trace: Trace) -> str:
    """The trace as CSV text in the format `parse` reads."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for request in trace.requests:
        writer.writerow((f"{request.at:.3f}", f"{request.duration:.3f}"))
    return out.getvalue()


def load(path: Path) -> Trace:
    """Read and parse a trace file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TraceError([problems.Problem(str(path), 0, "", f"cannot read: {err}")]) from err
    return parse(str(path), text)


# --- The bundled traces -------------------------------------------------------------------------

RateCurve = Callable[[float], float]


@dataclass(frozen=True)
class Bundled:
    """A bundled trace: its rate curve (requests per second at each second), length, peak."""

    name: str
    description: str
    seconds: float
    peak_rps: float
    rate: RateCurve


def _step(t: float) -> float:
    return 8.0 if 60 <= t < 360 else 1.0


def _ramp(t: float) -> float:
    if t < 600:
        return 0.5 + 9.5 * t / 600
    if t < 660:
        return 10.0
    return max(0.5, 10.0 - 9.5 * (t - 660) / 300)


def _diurnal(t: float) -> float:
    # A day compressed into 24 minutes: quiet at "midnight", a peak in the "afternoon".
    return 1.0 + 8.0 * (1 - math.cos(2 * math.pi * t / 1440)) / 2


def _spike(t: float) -> float:
    return 14.0 if 120 <= t < 150 else 2.0


BUNDLED: dict[str, Bundled] = {
    b.name: b
    for b in (
        Bundled("step", "1 rps, a step to 8 rps at 60 s, back to 1 rps at 360 s", 600, 8.0, _step),
        Bundled("ramp", "0.5 -> 10 rps over 10 min, a minute at 10, down over 5 min", 960, 10.0,
                _ramp),
        Bundled("diurnal", "a day in 24 minutes: 1 rps at night, 9 rps in the afternoon", 1440,
                9.0, _diurnal),
        Bundled("spike", "2 rps with a 30 s spike to 14 rps at 120 s", 420, 14.0, _spike),
    )
}  # fmt: skip


def generate(bundled: Bundled) -> Trace:
    """The requests of a bundled trace: Poisson arrivals thinned to its rate curve, log-normal
    durations; deterministic for a name (the generator is seeded with it)."""
    rng = random.Random(zlib.crc32(bundled.name.encode()))
    mu = math.log(MEAN_DURATION_S) - _DURATION_SIGMA**2 / 2
    requests = []
    t = 0.0
    while True:
        t += rng.expovariate(bundled.peak_rps)
        if t >= bundled.seconds:
            break
        if rng.random() * bundled.peak_rps < bundled.rate(t):
            duration = max(0.01, rng.lognormvariate(mu, _DURATION_SIGMA))
            requests.append(Request(round(t, 3), round(duration, 3)))
    return Trace(bundled.name, tuple(sorted(requests)))


def resolve(spec: str) -> Trace:
    """A bundled trace by name, else the trace file at that path."""
    bundled = BUNDLED.get(spec)
    if bundled is not None:
        return generate(bundled)
    return load(Path(spec))


def names() -> Iterable[str]:
    return BUNDLED.keys()
