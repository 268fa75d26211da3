"""What the ``real_node`` fixture (``conftest``) hands a test: the session plane's real node and
the image its pods can run."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.localcluster import realnode
from reconciler.localcluster.config import PlaneState


@dataclass(frozen=True)
class RealNodeFixture:
    """The session plane's real node and the image its pods can run (``pod_image``: the node's
    Debian image, loaded into the node's containerd; pods use ``imagePullPolicy: Never``)."""

    plane: PlaneState
    node: realnode.RealNode
    pod_image: str
