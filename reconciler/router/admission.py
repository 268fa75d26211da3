"""Admission control: how much of the offered load a router takes when its own CPU is the limit.

The per-deployment queue (`balancer`) protects the backends; this protects the router. Its
signal is event-loop lag, how late a timer set every TICK seconds fires, together with how much
of that tick the router's loop ran or waited to run (`lifecycle.LagMeter` measures both, the
second from Linux's schedstat: CPU time plus run-queue delay): while the router keeps up, the
loop is idle between events and the timer is on time; past its capacity every loop iteration
takes longer than the one before and the lag grows without bound, as do the latencies of
everything it admitted. A tick counts as late only when the lag is over the target (router.yaml's
`overload_lag_ms`, 10 ms unless set; 0 turns admission control off) and the loop wanted the CPU
for at least BUSY of the tick, so that it hardly ever sat idle waiting for events: demand over
what the core gives it, whether its own work is too much or other processes take part of the
core. A loop that still idles has room, however late its timer (other processes' time slices
on a shared core make it late by themselves).

Why the lag: it is where admitted requests wait. A saturated loop reads every ready socket in
one turn, so a request waits about a turn in its socket before it is read, and then a turn or
more for each step after (its task's first run, the backend's answer being read): its added
latency is a few turns, and the timer's lag is the length of a turn. Holding the lag near the
target is holding the admitted requests' wait near a few times it.

From the LATE_TICKS-th late tick in a row (one or two are a pause: a reload, a GC, another
process's time slice) the share of new scoring requests refused grows by UP for every TICK the
timer was late by (at most MAX_STEP a tick); once it refuses, every late tick raises it. It falls
back in two speeds: by DOWN per TICK on a tick where the loop had room (it idled: the overload
is over), by the much smaller CREEP per TICK on a tick where it was busy but on time (at its
capacity, refusing just enough: lowering the share fast there would let the loop fall behind
again and the admitted wait swing up with it). Capped at MAX_SHED. A refused
request gets the canned 503 with Retry-After (`replies.SHED`), answered by `front` as soon as
its URL is parsed, with no object made for it, which costs a fraction of a served request, so
the router's goodput stays near its maximum and the latency of what it admits stays bounded.
Which requests are refused is deterministic, an even thinning by a credit counter, not random.

Pure: `observe` takes the measured lag and CPU share, `admit` says yes or no; no clock, no I/O.
"""

from __future__ import annotations

TICK = 0.01  # seconds between lag measurements
# Share of a tick's wall time the loop must have run or waited to run to count as late: a loop
# that still spent more than the rest blocked waiting for events has room, however late its
# timer (on a shared core the time slices of other processes alone make it 10-20 ms late).
BUSY = 0.95
LATE_TICKS = 3  # ticks in a row above the target before anything is refused
UP = 0.05
DOWN = 0.01  # per TICK, while the loop has room
CREEP = 0.001  # per TICK, while the loop is busy but on time
MAX_STEP = 0.1  # the most one late tick adds
# Never refuse more than this. A refusal costs a good part of a served request, so at twice the
# capacity the share that keeps the loop on time is already near three quarters on a core of its
# own, and more on a core other processes take turns on; past this share, though, so little is
# served that refusing everything would hardly change it.
MAX_SHED = 0.95


class Admission:
    """The share of scoring requests to refuse, driven by the loop's lag."""

    __slots__ = ("_credit", "_late", "admitted", "refused", "shed_fraction", "target_lag")

    def __init__(self, target_lag: float) -> None:
        self.target_lag = target_lag  # seconds; 0: never refuse
        self.shed_fraction = 0.0
        self._late = 0  # ticks in a row above the target
        self._credit = 1.0
        self.admitted = 0
        self.refused = 0

    def observe(self, lag: float, busy: float = 1.0) -> None:
        """One tick: its lag (seconds late) and the time the loop ran or waited to run over the
        tick's wall time.

        A late tick stands for every TICK it was late by (a loop that is 200 ms behind does not
        wait 20 slow ticks to react), and so does the recovery: the steps scale with the time the
        tick covered."""
        if self.target_lag <= 0.0:
            return
        steps = 1.0 + lag / TICK
        busy_loop = busy >= BUSY
        if lag > self.target_lag and busy_loop:
            self._late += 1
            if self._late >= LATE_TICKS or self.shed_fraction > 0.0:
                step = min(MAX_STEP, UP * (lag / TICK))
                self.shed_fraction = min(MAX_SHED, self.shed_fraction + step)
            return
        self._late = 0
        if self.shed_fraction > 0.0:
            down = (CREEP if busy_loop else DOWN) * steps
            self.shed_fraction = max(0.0, self.shed_fraction - down)
            if self.shed_fraction == 0.0:
                self._credit = 1.0

    def admit(self) -> bool:
        """Whether to take the next request: every one while not overloaded, else an even
        (1 - shed_fraction) share of them."""
        fraction = self.shed_fraction
        if fraction == 0.0:
            self.admitted += 1
            return True
        # Each request earns (1 - fraction) of an admission; a whole one admits it. The credit
        # starts full, so the first request after a quiet spell is taken.
        self._credit += 1.0 - fraction
        if self._credit >= 1.0:
            self._credit -= 1.0
            self.admitted += 1
            return True
        self.refused += 1
        return False
