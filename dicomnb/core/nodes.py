"""DICOM nodes (the archives we query) and the calling node (ourselves), kept in ``nodes.json``.

A :class:`DicomNode` names a remote Application Entity: its called AE title, host and port,
optional TLS files, and an optional WADO-URI base URL for retrieval after C-FIND. The
:class:`CallingNode` is our own AE title and the port of our Storage SCP (the C-MOVE
destination the archive must know). :class:`NodeStore` keeps both in ``nodes.json`` in
:func:`~dicomnb.core.config.config_dir`::

    {"version": 1,
     "calling": {"aet": "DICOMNB", "port": 11113, "host": "127.0.0.1"},
     "nodes": [{"type": "dimse", "name": "orthanc", "aet": "ORTHANC", "host": "127.0.0.1",
                "port": 4242, "tls_ca": null, "tls_cert": null, "tls_key": null,
                "wado_url": null}]}

Each node carries a ``type`` ("dimse" for now) so other node types (DICOMweb) can share the
file. No password is ever stored: TLS client keys are referred to by path only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dicomnb.core.config import config_dir, read_json_object, write_json_object
from dicomnb.core.errors import ConfigError

__all__ = ["CallingNode", "DicomNode", "NodeStore", "check_ae_title", "check_port"]

NODES_FILE = "nodes.json"
FORMAT_VERSION = 1
DIMSE = "dimse"


def check_ae_title(aet: str, what: str = "AE title") -> str:
    """Return ``aet`` if it is a valid AE title, else raise :class:`ConfigError`.

    An AE title has 1 to 16 characters of the default repertoire, not all spaces, with no
    backslash and no control character. Leading and trailing spaces are not significant
    and are removed.
    """
    if not isinstance(aet, str):
        raise ConfigError(f"the {what} must be text, not {type(aet).__name__}")
    stripped = aet.strip(" ")
    if not stripped:
        raise ConfigError(f"the {what} is blank: give 1 to 16 characters, such as ORTHANC")
    if len(stripped) > 16:
        raise ConfigError(f"the {what} {stripped!r} has {len(stripped)} characters: 16 at most")
    if "\\" in stripped:
        raise ConfigError(f"the {what} {stripped!r} contains a backslash, which DICOM forbids")
    if any(ord(c) < 0x20 or ord(c) > 0x7E for c in stripped):
        raise ConfigError(
            f"the {what} {stripped!r} contains a control or non-ASCII character: "
            "use letters, digits, spaces and punctuation"
        )
    return stripped


def check_port(port: object, what: str = "port") -> int:
    """Return ``port`` as an int if it is a TCP port number (1-65535), else raise ConfigError."""
    if isinstance(port, bool) or not isinstance(port, int):
        try:
            port = int(str(port), 10)
        except ValueError:
            raise ConfigError(f"the {what} {port!r} is not a number: give 1 to 65535") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"the {what} {port} is out of range: give 1 to 65535")
    return port


def _check_host(host: object) -> str:
    if not isinstance(host, str) or not host.strip():
        raise ConfigError("the host is blank: give a name or an address, such as 127.0.0.1")
    if any(c.isspace() for c in host.strip()):
        raise ConfigError(f"the host {host!r} contains spaces")
    return host.strip()


def _check_wado_url(url: object) -> str | None:
    if url is None or url == "":
        return None
    if not isinstance(url, str):
        raise ConfigError(f"the WADO-URI URL must be text, not {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(
            f"the WADO-URI URL {url!r} is not an http(s) URL: give one such as http://host:8042/wado"
        )
    return url


def _check_path(value: object, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"the {what} must be a path, not {type(value).__name__}")
    return value


@dataclass(frozen=True)
class DicomNode:
    """A remote DICOM Application Entity (an archive, a PACS) reached over DIMSE.

    Parameters
    ----------
    name : str
        The name the user calls it by (unique in the store).
    aet : str
        Its called AE title.
    host : str
        Host name or address.
    port : int
        Its DICOM port.
    tls_ca : str, optional
        A PEM file of CA certificates: when set, the association runs over TLS.
    tls_cert, tls_key : str, optional
        Our client certificate and its key (PEM), for servers that check clients.
    wado_url : str, optional
        A WADO-URI base URL (``http://host:8042/wado``) for retrieval after C-FIND.
    """

    name: str
    aet: str
    host: str
    port: int
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    wado_url: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("the node name is blank: give a short name such as 'pacs'")
        object.__setattr__(self, "name", self.name.strip())
        object.__setattr__(self, "aet", check_ae_title(self.aet, "called AE title"))
        object.__setattr__(self, "host", _check_host(self.host))
        object.__setattr__(self, "port", check_port(self.port))
        for field in ("tls_ca", "tls_cert", "tls_key"):
            object.__setattr__(self, field, _check_path(getattr(self, field), field.replace("_", " ")))
        object.__setattr__(self, "wado_url", _check_wado_url(self.wado_url))
        if self.tls_key and not self.tls_cert:
            raise ConfigError(f"node {self.name!r}: a TLS key needs its certificate (--tls-cert)")
        if self.tls_cert and not self.tls_ca:
            raise ConfigError(
                f"node {self.name!r}: a TLS client certificate needs the server's CA (--tls-ca)"
            )

    @property
    def tls(self) -> bool:
        """True when associations with this node run over TLS."""
        return self.tls_ca is not None

    def to_json(self) -> dict[str, Any]:
        """The node as a JSON object (with ``"type": "dimse"``)."""
        return {"type": DIMSE, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> DicomNode:
        """Build a node from :meth:`to_json`'s output; unknown keys are an error."""
        data = {k: v for k, v in value.items() if k != "type"}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown node field(s) {', '.join(unknown)}")
        missing = sorted({"name", "aet", "host", "port"} - set(data))
        if missing:
            raise ConfigError(f"node field(s) missing: {', '.join(missing)}")
        return cls(**data)


@dataclass(frozen=True)
class CallingNode:
    """Ourselves: the AE title we call with and the port of our Storage SCP (C-MOVE target).

    Parameters
    ----------
    aet : str
        Our (calling) AE title; archives must know it as a C-MOVE destination.
    port : int
        The port our Storage SCP listens on during a C-MOVE.
    host : str
        The address our Storage SCP binds to.
    """

    aet: str = "DICOMNB"
    port: int = 11113
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "aet", check_ae_title(self.aet, "calling AE title"))
        object.__setattr__(self, "port", check_port(self.port, "Storage SCP port"))
        object.__setattr__(self, "host", _check_host(self.host))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> CallingNode:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ConfigError(f"unknown calling node field(s) {', '.join(unknown)}")
        return cls(**value)


class NodeStore:
    """The nodes and the calling node kept in a ``nodes.json`` file.

    Every change is written at once (atomically). Read it with :meth:`load`.

    Parameters
    ----------
    path : Path
        The JSON file (``config_dir() / "nodes.json"`` by :meth:`load`).
    nodes : sequence of DicomNode
        The nodes, in the order they were added.
    calling : CallingNode
        Ourselves.
    """

    def __init__(self, path: Path, nodes: tuple[DicomNode, ...] = (),
                 calling: CallingNode | None = None) -> None:
        self.path = Path(path)
        self._nodes: dict[str, DicomNode] = {node.name: node for node in nodes}
        self.calling = calling or CallingNode()

    @classmethod
    def load(cls, path: Path | None = None) -> NodeStore:
        """Read the store from ``path`` (default: ``nodes.json`` in the config folder).

        A missing file is an empty store with the default calling node.

        Raises
        ------
        ConfigError
            The file is corrupt; the message names it.
        """
        path = Path(path) if path is not None else config_dir() / NODES_FILE
        data = read_json_object(path)
        if data is None:
            return cls(path)
        try:
            raw_nodes = data.get("nodes", [])
            if not isinstance(raw_nodes, list):
                raise ConfigError("'nodes' is not a list")
            nodes = []
            for raw in raw_nodes:
                if not isinstance(raw, dict):
                    raise ConfigError("a node is not a JSON object")
                kind = raw.get("type", DIMSE)
                if kind != DIMSE:
                    raise ConfigError(f"node type {kind!r} is not supported by this version")
                nodes.append(DicomNode.from_json(raw))
            raw_calling = data.get("calling", {})
            if not isinstance(raw_calling, dict):
                raise ConfigError("'calling' is not a JSON object")
            calling = CallingNode.from_json(raw_calling)
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"the configuration file {path} is not usable: {exc}: fix it or delete it") from exc
        return cls(path, tuple(nodes), calling)

    def save(self) -> None:
        """Write the store to its file (atomically)."""
        write_json_object(self.path, {
            "version": FORMAT_VERSION,
            "calling": self.calling.to_json(),
            "nodes": [node.to_json() for node in self._nodes.values()],
        })

    @property
    def nodes(self) -> tuple[DicomNode, ...]:
        """The nodes, in the order they were added."""
        return tuple(self._nodes.values())

    def names(self) -> list[str]:
        """The node names, in the order they were added."""
        return list(self._nodes)

    def __iter__(self) -> Iterator[DicomNode]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def _unknown(self, name: str) -> ConfigError:
        known = ", ".join(self._nodes) or "none yet: add one with 'dicomnb node add'"
        return ConfigError(f"no node named {name!r} (known nodes: {known})")

    def get(self, name: str) -> DicomNode:
        """The node called ``name``.

        Raises
        ------
        ConfigError
            No such node; the message lists the known ones.
        """
        try:
            return self._nodes[name]
        except KeyError:
            raise self._unknown(name) from None

    def add(self, node: DicomNode, *, replace: bool = False) -> DicomNode:
        """Add ``node`` and save; a node of the same name is an error unless ``replace``."""
        if node.name in self._nodes and not replace:
            raise ConfigError(
                f"a node named {node.name!r} exists already: choose another name or replace it "
                "(--replace, replace=True)"
            )
        self._nodes[node.name] = node
        self.save()
        return node

    def remove(self, name: str) -> DicomNode:
        """Remove the node called ``name`` and save; return it."""
        if name not in self._nodes:
            raise self._unknown(name)
        node = self._nodes.pop(name)
        self.save()
        return node

    def set_calling(self, calling: CallingNode) -> None:
        """Change our AE title / Storage SCP port and save."""
        self.calling = calling
        self.save()
