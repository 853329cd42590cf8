"""DICOM nodes (the archives we query) and the calling node (ourselves), kept in ``nodes.json``.

A :class:`DicomNode` names a remote Application Entity: its called AE title, host and port,
optional TLS files, and an optional WADO-URI base URL for retrieval after C-FIND. A
:class:`DicomWebNode` names a DICOMweb service: its base URL (QIDO-RS and WADO-RS prefixes
may differ), extra HTTP headers and how it authenticates (none, basic, bearer). The
:class:`CallingNode` is our own AE title and the port of our Storage SCP (the C-MOVE
destination the archive must know). :class:`NodeStore` keeps both in ``nodes.json`` in
:func:`~dicomnb.core.config.config_dir`::

    {"version": 1,
     "calling": {"aet": "DICOMNB", "port": 11113, "host": "127.0.0.1"},
     "nodes": [{"type": "dimse", "name": "orthanc", "aet": "ORTHANC", "host": "127.0.0.1",
                "port": 4242, "tls_ca": null, "tls_cert": null, "tls_key": null,
                "wado_url": null}]}

Each node carries a ``type`` ("dimse" or "dicomweb"). No password or token is ever stored:
TLS client keys are referred to by path, and a DICOMweb secret by the name of the
environment variable that holds it (or it is asked for, see :mod:`dicomnb.core.secrets`).
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

__all__ = ["AUTH_METHODS", "AnyNode", "CallingNode", "DicomNode", "DicomWebNode", "NodeStore",
           "check_ae_title", "check_port"]

NODES_FILE = "nodes.json"
FORMAT_VERSION = 1
DIMSE = "dimse"
DICOMWEB = "dicomweb"
#: How a DICOMweb node authenticates: nothing, HTTP basic (user + password), a bearer token.
AUTH_METHODS = ("none", "basic", "bearer")


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


def _check_url(url: object, what: str = "WADO-URI URL",
               example: str = "http://host:8042/wado") -> str | None:
    if url is None or url == "":
        return None
    if not isinstance(url, str):
        raise ConfigError(f"the {what} must be text, not {type(url).__name__}")
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(f"the {what} {url!r} is not an http(s) URL: give one such as {example}")
    if parts.username is not None or parts.password is not None:
        # Never keep a secret in a URL: it would be written to the node file and shown in errors.
        raise ConfigError(f"the {what} carries a user name or password: remove it from the URL and "
                          "use --auth basic --user NAME --secret-env VAR instead")
    if parts.fragment:
        raise ConfigError(f"the {what} {url!r} has a #fragment, which HTTP does not send: remove it")
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
        object.__setattr__(self, "wado_url", _check_url(self.wado_url))
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

    kind = DIMSE

    def to_json(self) -> dict[str, Any]:
        """The node as a JSON object (with ``"type": "dimse"``)."""
        return {"type": DIMSE, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> DicomNode:
        """Build a node from :meth:`to_json`'s output; unknown keys are an error."""
        return cls(**_fields_of(cls, value, ("name", "aet", "host", "port")))

    def describe(self) -> str:
        """A one-line summary: ``ORTHANC@127.0.0.1:4242 (TLS)``."""
        return f"{self.aet}@{self.host}:{self.port}" + (" (TLS)" if self.tls else "")


def _fields_of(cls: type, value: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    data = {k: v for k, v in value.items() if k != "type"}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown node field(s) {', '.join(unknown)}")
    missing = sorted(set(required) - set(data))
    if missing:
        raise ConfigError(f"node field(s) missing: {', '.join(missing)}")
    return data


_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _check_headers(headers: object) -> tuple[tuple[str, str], ...]:
    """HTTP header (name, value) pairs, from a mapping or pairs; Authorization is refused."""
    if headers is None:
        return ()
    if isinstance(headers, dict):
        pairs = list(headers.items())
    elif isinstance(headers, (list, tuple)):
        pairs = []
        for pair in headers:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ConfigError(f"an HTTP header must be a (name, value) pair, not {pair!r}")
            pairs.append((pair[0], pair[1]))
    else:
        raise ConfigError(f"HTTP headers must be a mapping of name to value, not {type(headers).__name__}")
    checked = []
    for name, value in pairs:
        if not isinstance(name, str) or not name or not set(name) <= _TOKEN_CHARS:
            raise ConfigError(f"{name!r} is not an HTTP header name")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ConfigError(f"the HTTP header {name} has a value that is not one line of text")
        if name.lower() in {"authorization", "proxy-authorization", "cookie"}:
            # It would be written in clear into the node file.
            raise ConfigError(f"the header {name} holds a secret, which is never stored: use "
                              "--auth basic|bearer --secret-env VAR instead")
        checked.append((name, value.strip()))
    return tuple(checked)


@dataclass(frozen=True)
class DicomWebNode:
    """A DICOMweb service (QIDO-RS search, WADO-RS retrieval).

    Parameters
    ----------
    name : str
        The name the user calls it by (unique in the store, shared with DIMSE nodes).
    url : str
        The service's base URL (Orthanc: ``http://host:8042/dicom-web``).
    qido_url, wado_url : str, optional
        The QIDO-RS and WADO-RS prefixes when they differ from ``url``.
    headers : mapping or pairs of str, optional
        Extra HTTP headers sent with every request (never ``Authorization``).
    auth : {"none", "basic", "bearer"}
        How the service authenticates us.
    user : str, optional
        The user name of basic authentication.
    secret_env : str, optional
        The environment variable that holds the password or token. Without it (or when it
        is not set) the secret is asked for once per process (:mod:`dicomnb.core.secrets`).
    """

    name: str
    url: str
    qido_url: str | None = None
    wado_url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    auth: str = "none"
    user: str | None = None
    secret_env: str | None = None

    kind = DICOMWEB

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("the node name is blank: give a short name such as 'pacs'")
        object.__setattr__(self, "name", self.name.strip())
        example = "http://host:8042/dicom-web"
        url = _check_url(self.url, "DICOMweb URL", example)
        if url is None:
            raise ConfigError(f"node {self.name!r}: the DICOMweb URL is blank: give one such as {example}")
        object.__setattr__(self, "url", url.rstrip("/"))
        for field, what in (("qido_url", "QIDO-RS URL"), ("wado_url", "WADO-RS URL")):
            value = _check_url(getattr(self, field), what, example)
            object.__setattr__(self, field, value.rstrip("/") if value else None)
        object.__setattr__(self, "headers", _check_headers(self.headers))
        if self.auth is None:
            object.__setattr__(self, "auth", "none")
        if self.auth not in AUTH_METHODS:
            raise ConfigError(f"node {self.name!r}: unknown authentication {self.auth!r}: "
                              f"choose {', '.join(AUTH_METHODS)}")
        if self.user is not None and (not isinstance(self.user, str) or ":" in self.user):
            raise ConfigError(f"node {self.name!r}: the user name must be text without ':'")
        if self.auth == "basic" and not self.user:
            raise ConfigError(f"node {self.name!r}: basic authentication needs a user name (--user)")
        if self.auth != "basic" and self.user:
            raise ConfigError(f"node {self.name!r}: a user name is only used with --auth basic")
        if self.secret_env is not None:
            if (not isinstance(self.secret_env, str) or not self.secret_env
                    or not (self.secret_env.replace("_", "a").isalnum() and not self.secret_env[0].isdigit())):
                raise ConfigError(f"node {self.name!r}: {self.secret_env!r} is not an environment "
                                  "variable name (letters, digits and _)")
            if self.auth == "none":
                raise ConfigError(f"node {self.name!r}: --secret-env needs --auth basic or bearer")

    @property
    def qido(self) -> str:
        """The QIDO-RS prefix (``…/studies`` is appended to it)."""
        return self.qido_url or self.url

    @property
    def wado(self) -> str:
        """The WADO-RS prefix (``…/studies/UID/series/UID`` is appended to it)."""
        return self.wado_url or self.url

    @property
    def tls(self) -> bool:
        """True when the service is reached over https."""
        return self.qido.startswith("https:") and self.wado.startswith("https:")

    def to_json(self) -> dict[str, Any]:
        """The node as a JSON object (with ``"type": "dicomweb"``); it holds no secret."""
        data = dataclasses.asdict(self)
        data["headers"] = dict(self.headers)
        return {"type": DICOMWEB, **data}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> DicomWebNode:
        """Build a node from :meth:`to_json`'s output; unknown keys are an error."""
        return cls(**_fields_of(cls, value, ("name", "url")))

    def describe(self) -> str:
        """A one-line summary: ``DICOMweb http://host:8042/dicom-web (basic auth)``."""
        auth = "" if self.auth == "none" else f" ({self.auth} auth)"
        return f"DICOMweb {self.url}{auth}"


#: Any saved node.
AnyNode = DicomNode | DicomWebNode
_NODE_TYPES: dict[str, type[DicomNode] | type[DicomWebNode]] = {DIMSE: DicomNode, DICOMWEB: DicomWebNode}


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

    def __init__(self, path: Path, nodes: tuple[AnyNode, ...] = (),
                 calling: CallingNode | None = None) -> None:
        self.path = Path(path)
        self._nodes: dict[str, AnyNode] = {node.name: node for node in nodes}
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
            nodes: list[AnyNode] = []
            for raw in raw_nodes:
                if not isinstance(raw, dict):
                    raise ConfigError("a node is not a JSON object")
                kind = raw.get("type", DIMSE)
                if kind not in _NODE_TYPES:
                    raise ConfigError(f"node type {kind!r} is not supported by this version")
                nodes.append(_NODE_TYPES[kind].from_json(raw))
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
    def nodes(self) -> tuple[AnyNode, ...]:
        """The nodes, in the order they were added."""
        return tuple(self._nodes.values())

    def names(self) -> list[str]:
        """The node names, in the order they were added."""
        return list(self._nodes)

    def __iter__(self) -> Iterator[AnyNode]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def _unknown(self, name: str) -> ConfigError:
        known = ", ".join(self._nodes) or "none yet: add one with 'dicomnb node add'"
        return ConfigError(f"no node named {name!r} (known nodes: {known})")

    def get(self, name: str) -> AnyNode:
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

    def add(self, node: AnyNode, *, replace: bool = False) -> AnyNode:
        """Add ``node`` and save; a node of the same name is an error unless ``replace``."""
        if node.name in self._nodes and not replace:
            raise ConfigError(
                f"a node named {node.name!r} exists already: choose another name or replace it "
                "(--replace, replace=True)"
            )
        self._nodes[node.name] = node
        self.save()
        return node

    def remove(self, name: str) -> AnyNode:
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
