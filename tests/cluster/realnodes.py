"""What the ``real_node`` fixture (``conftest``) hands a test: a plane with a real node, the image
its pods can run and an API client on that plane."""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client

from reconciler.localcluster import realnode
from reconciler.localcluster.config import PlaneState


@dataclass(frozen=True)
class RealNodeFixture:
    """A plane's real node and the image its pods can run (``pod_image``: the node's Debian
    image, loaded into the node's containerd; pods use ``imagePullPolicy: Never``)."""

    plane: PlaneState
    node: realnode.RealNode
    pod_image: str
    api: client.ApiClient
