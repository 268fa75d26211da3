"""Where a pod's address is really served: the pod network as the router's discovery sees it.

An edge module of its own (a file format and its reader), below both its users, which may not
import each other: the router reads it (`router.discovery`), the local plane's pod runtime
(`localcluster.podruntime`) writes it.

In a real cluster a pod's IP is reachable and discovery's URLs are used as they are. The
project's local plane simulates its nodes (kwok): pod IPs there exist only on paper, and the
plane's pod runtime (`reconciler.localcluster.podruntime`) runs each pod's server on a loopback
port instead. It keeps a JSON file mapping each served `POD_IP:PORT` to its `127.0.0.1:PORT`
and names the file in the router's environment (`VARIABLE`); `translate` maps discovered URLs
through it. An endpoint the file does not list is not served on this machine and is left out.
Without the variable (every real cluster) `translate` returns the URLs unchanged.

The file is rewritten whole (a new file renamed over the old), so a reader never sees half of
it; it is read on every change of endpoints, which is rare next to requests.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

VARIABLE = "RECONCILER_POD_NETWORK"


def read(path: Path) -> dict[str, str]:
    """The mapping in `path`: `{"IP:PORT": "HOST:PORT"}`; empty when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        log.warning("pod network map %s unreadable: %s", path, err)
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items()}


def write(path: Path, mapping: Mapping[str, str]) -> None:
    """Replace the mapping in `path` at once (write a new file, rename it over the old)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(dict(sorted(mapping.items())), indent=1))
    partial.replace(path)


def map_urls(urls: Iterable[str], mapping: Mapping[str, str]) -> list[str]:
    """Each URL with its `host:port` replaced by the mapped one; unmapped URLs left out."""
    found: set[str] = set()
    for url in urls:
        parts = urlsplit(url)
        local = mapping.get(parts.netloc)
        if local is not None:
            found.add(f"{parts.scheme}://{local}")
    return sorted(found)


def translate(urls: list[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """The URLs the router should use for these discovered ones (see the module docstring)."""
    where = (os.environ if environ is None else environ).get(VARIABLE)
    if not where:
        return urls
    return map_urls(urls, read(Path(where)))
