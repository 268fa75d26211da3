"""The documented replica sizing rule for a model deployment, pure.

Where it is documented: `docs/domain.md#the-inference-router`.

`replicas = ceil(target_rps * request_seconds / target_utilization / max_requests_per_replica)`:
the requests in flight at the target rate (Little's law), spread so that each replica runs at the
target utilization. `reconciler router replicas` prints it; the autoscaler does not use it (it
measures utilization instead), it is the starting point users size `min_instances` from.
"""

from __future__ import annotations

import math
from fractions import Fraction


def replicas(
    rps: float, request_seconds: float, target_percent: float = 70, per_replica: int = 1
) -> int:
    """Replicas needed for `rps` requests per second taking `request_seconds` each.

    >>> replicas(20, 10, 70, 1)
    286
    """
    if rps < 0 or request_seconds < 0:
        raise ValueError("rps and request seconds must not be negative")
    if not 0 < target_percent <= 100:
        raise ValueError("target utilization must be in (0, 100] percent")
    if per_replica < 1:
        raise ValueError("requests per replica must be at least 1")
    # Exact rational arithmetic: 20 * 10 / 0.7 is 285.714..., but a product landing exactly on an
    # integer (e.g. 7 rps, 10 s, 70 %) must not round up because of a float error.
    needed = (
        Fraction(str(rps))
        * Fraction(str(request_seconds))
        * 100
        / Fraction(str(target_percent))
        / per_replica
    )
    return math.ceil(needed)
