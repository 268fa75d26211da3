"""The host's routes to real nodes' pods: read, claim and delete (the I/O of ``podnetwork``).

Used by ``realnode`` (a plane's start claims its pod range and routes each node's /24) and by
``plane`` (a stop deletes the plane's routes before its Docker network goes). Only root may change
the host's routes; anyone else gets none, and pod IPs then answer only inside the plane.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from typing import Any

from reconciler.localcluster import hostdocker, podnetwork
from reconciler.localcluster import realnodeconfig as rc


def can_route() -> bool:
    """Whether this process may change the host's routes."""
    return os.geteuid() == 0


def ip_routes() -> list[dict[str, Any]]:
    """The host's IPv4 routes as ``ip -j`` gives them (none if ``ip`` fails)."""
    proc = subprocess.run(
        ["ip", "-j", "-4", "route", "show"], capture_output=True, text=True, check=False
    )
    data = json.loads(proc.stdout or "[]") if proc.returncode == 0 else []
    return data if isinstance(data, list) else []


def claimed_pod_range(pid: str) -> ipaddress.IPv4Network | None:
    """The pod range the plane's Docker network claims (None: no network, or no claim on it)."""
    proc = hostdocker.docker("network", "inspect", rc.network_name(pid), check=False)
    if proc.returncode != 0:
        return None
    info = json.loads(proc.stdout or "[]")
    claim = ((info[0].get("Labels") or {}).get(rc.POD_RANGE_LABEL) or "") if info else ""
    found = podnetwork.claimed_ranges([claim])
    return next(iter(found)) if found else None


def add(cmd: list[str]) -> str | None:
    """Run one ``ip route`` command; the error text if it failed."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return None if proc.returncode == 0 else proc.stderr.strip() or f"exit {proc.returncode}"


def remove_plane_routes(pid: str) -> list[ipaddress.IPv4Network]:
    """Delete the host's routes into the plane's claimed range; returns those deleted."""
    plane_range = claimed_pod_range(pid)
    if plane_range is None or not can_route():
        return []
    gone = podnetwork.routes_within(plane_range, ip_routes())
    for dst in gone:
        subprocess.run(podnetwork.delete_route_command(dst), capture_output=True, check=False)
    return gone
