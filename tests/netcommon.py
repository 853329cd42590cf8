"""What the network tests share: the peers, the CT study every peer holds, a node for a
peer, and the handling of pynetdicom's known socket leak."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from dicomnb.core.nodes import DicomNode

PEERS = ["orthanc", "dcmqrscp", "qrscp"]

# pydicom's CT_small.dcm, loaded into every peer.
CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
CT_SERIES = "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"
CT_INSTANCE = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"

# pynetdicom 3.0.4 does not close its socket when connecting fails (refused, TLS handshake
# refused): the socket is freed with a ResourceWarning (pydicom/pynetdicom#979, fixed by #999).
# It is pynetdicom's socket, not one of ours: ignore exactly that warning in those tests.
pynetdicom_socket_leak = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <(socket\.socket|ssl\.SSLSocket):pytest.PytestUnraisableExceptionWarning"
)


@pytest.fixture(autouse=True)
def collect_garbage() -> Iterator[None]:
    """Free unreachable sockets at the end of each test, so a leak is blamed on its own test."""
    yield
    gc.collect()


def node_of(peer: Any, **changes: object) -> DicomNode:
    """A node for a test peer (with its WADO-URI address when it has one)."""
    values: dict[str, object] = {"name": peer.name, "aet": peer.aet, "host": peer.host, "port": peer.port,
                                 "wado_url": peer.wado_url}
    values.update(changes)
    return DicomNode(**values)  # type: ignore[arg-type]
