"""The network verbs a notebook user types: nodes, C-ECHO, search presets.

>>> import dicomnb
>>> dicomnb.add_node("orthanc", aet="ORTHANC", host="127.0.0.1", port=4242)
>>> dicomnb.echo("orthanc")          # seconds
>>> dicomnb.presets().save("CT last week", dicomnb.SearchCriteria(modalities=("CT",), period="last-week"))

Nodes and presets live in the configuration folder (``$DICOMNB_CONFIG_DIR`` or the user's
config dir); pynetdicom is imported only when a network call is made.
"""

from __future__ import annotations

import os

from dicomnb.core.nodes import CallingNode, DicomNode, NodeStore
from dicomnb.core.presets import Presets

__all__ = ["add_node", "echo", "nodes", "presets", "remove_node"]


def _absolute(path: str | os.PathLike[str] | None) -> str | None:
    return os.path.abspath(os.fspath(path)) if path else None


def add_node(
    name: str,
    aet: str,
    host: str,
    port: int,
    *,
    wado_url: str | None = None,
    tls_ca: str | os.PathLike[str] | None = None,
    tls_cert: str | os.PathLike[str] | None = None,
    tls_key: str | os.PathLike[str] | None = None,
    replace: bool = False,
) -> DicomNode:
    """Add a DICOM node (an archive to query) to the saved nodes and return it.

    Parameters
    ----------
    name : str
        The name to call it by.
    aet, host, port
        Its called AE title and DICOM address.
    wado_url : str, optional
        Its WADO-URI base URL (``http://host:8042/wado``), for retrieval after C-FIND.
    tls_ca, tls_cert, tls_key : path, optional
        TLS: the server's CA (turns TLS on), our client certificate and key. Kept as
        absolute paths; their content is never copied into the configuration.
    replace : bool
        Replace a node of the same name instead of refusing.

    Raises
    ------
    ConfigError
        A value is not valid (the message says which), or the name is taken.
    """
    node = DicomNode(name=name, aet=aet, host=host, port=port, wado_url=wado_url,
                     tls_ca=_absolute(tls_ca), tls_cert=_absolute(tls_cert), tls_key=_absolute(tls_key))
    return NodeStore.load().add(node, replace=replace)


def nodes() -> list[DicomNode]:
    """The saved DICOM nodes, in the order they were added."""
    return list(NodeStore.load().nodes)


def remove_node(name: str) -> DicomNode:
    """Remove the saved node ``name`` and return it (ConfigError listing the known ones if unknown)."""
    return NodeStore.load().remove(name)


def echo(node: str | DicomNode, *, calling: CallingNode | None = None, timeout: float = 10) -> float:
    """C-ECHO a node (by name or as a :class:`DicomNode`); return the seconds it took.

    Raises
    ------
    ConfigError
        No saved node of that name.
    ConnectionFailed, AssociationRejected, AssociationAborted, QueryFailed
        The node did not answer; the message says what to check.
    DependencyMissing
        pynetdicom is not installed (``pip install 'dicomnb[network]'``).
    """
    from dicomnb.sources.dimse import echo as dimse_echo

    store = NodeStore.load()
    target = store.get(node) if isinstance(node, str) else node
    return dimse_echo(target, calling or store.calling, timeout=timeout)


def presets() -> Presets:
    """The saved search presets ("Empty" and "Today" built in), read afresh from disk."""
    return Presets.load()
