"""Pure logic of the real nodes' pod network: which addresses a plane's pods get, and the routes
that carry traffic to them.

Each real node hands its pods addresses from a /24 of its own (its CNI bridge); a plane's nodes
share a /20 out of ``realnodeconfig.POD_SUPERNET``. Nothing but routes connects those ranges:

- the host reaches a pod through one route per node, ``<node's /24> via <node container's
  address>`` on the plane's Docker network (so tests and the CLI talk to pod IPs directly);
- a node reaches another node's pods the same way, with the route in its own network namespace
  (what kind's kindnetd does), so pods on different real nodes talk to each other.

Two planes on one machine must not share a /20 (their host routes would collide), and a hash of
the plane's id alone cannot promise that (16 ranges). So a plane *claims* its /20 when its Docker
network is created: the range is a label on the network (``realnodeconfig.POD_RANGE_LABEL``),
and the choice skips every range another plane's network claims or a host route already uses.
The claim goes with the network (``plane.stop`` and the orphan sweep remove both), and so do the
routes: the kernel drops a route when its bridge goes, and ``realnode`` deletes them first.

``realnode`` runs this (``docker``, ``ip route``); here are only choices and command lines.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

from reconciler.localcluster import realnodeconfig as rc

Network = ipaddress.IPv4Network


class NoFreePodRange(RuntimeError):
    """Every /20 of the pod supernet is claimed or routed already."""


def claimed_ranges(labels_of_networks: Iterable[str]) -> set[Network]:
    """The /20s named by planes' networks' ``POD_RANGE_LABEL`` values (bad ones are ignored: a
    network without a valid claim claims nothing)."""
    out: set[Network] = set()
    for value in labels_of_networks:
        try:
            net = ipaddress.ip_network(value.strip())
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            out.add(net)
    return out


def routed_ranges(ip_route_json: Sequence[dict[str, Any]]) -> set[Network]:
    """Destinations of the host's IPv4 routes (``ip -j -4 route show``) inside the supernet: a
    range something already routes is not free, whoever made the route."""
    out: set[Network] = set()
    for route in ip_route_json:
        dst = route.get("dst")
        if not dst or dst == "default":
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network) and net.overlaps(rc.POD_SUPERNET):
            out.add(net)
    return out


def choose_plane_range(pid: str, taken: Iterable[Network]) -> Network:
    """The plane's /20: its preferred one (from its id) if nothing overlaps it, else the next
    free one in order. Deterministic for the same ``taken``."""
    busy = list(taken)
    ranges = list(rc.POD_SUPERNET.subnets(new_prefix=rc.PLANE_POD_PREFIX))
    first = ranges.index(rc.plane_pod_range(pid))
    for offset in range(len(ranges)):
        candidate = ranges[(first + offset) % len(ranges)]
        assert isinstance(candidate, ipaddress.IPv4Network)
        if not any(candidate.overlaps(b) for b in busy):
            return candidate
    raise NoFreePodRange(
        f"all {len(ranges)} pod ranges of {rc.POD_SUPERNET} are claimed by other planes or "
        "routed already; stop a plane (`reconciler cluster down --state-dir ...`)"
    )


def route_command(pod_range: Network, via: str) -> list[str]:
    """``ip route replace``: idempotent, and a route left to an old address is overwritten."""
    return ["ip", "route", "replace", str(pod_range), "via", via]


def delete_route_command(pod_range: Network) -> list[str]:
    return ["ip", "route", "delete", str(pod_range)]


def node_routes(nodes: dict[str, tuple[Network, str]]) -> dict[str, list[list[str]]]:
    """For each node (name -> (its pod /24, its address)), the routes it needs to the other
    nodes' pods; a node's own /24 is on its bridge already."""
    return {
        name: [route_command(other_range, other_ip)
               for other, (other_range, other_ip) in sorted(nodes.items()) if other != name]
        for name in nodes
    }  # fmt: skip


def host_routes(nodes: dict[str, tuple[Network, str]]) -> list[list[str]]:
    """The host's routes to every node's pods."""
    return [route_command(r, ip) for _name, (r, ip) in sorted(nodes.items())]


def routes_within(plane_range: Network, ip_route_json: Sequence[dict[str, Any]]) -> list[Network]:
    """The host's routes into a plane's /20 (what a stop deletes)."""
    return sorted(n for n in routed_ranges(ip_route_json) if n.subnet_of(plane_range))
