"""DIMSE over TLS against a real DCMTK server: storescp with a test CA made here.

Debian's dcmqrscp is built without TLS; storescp has it. It is started requiring a client
certificate signed by the test CA, and called through both network layers: pynetdicom
(:func:`dicomnb.sources.dimse.echo`, the public ``dicomnb.echo``) and the lean upper layer
that retrieval runs on (:mod:`dicomnb.sources.retrieve`, :mod:`dicomnb.sources.upperlayer`).
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import TEST_FILES, require_module, require_tool
from netcommon import CT_INSTANCE, CT_SERIES, CT_STUDY, collect_garbage, node_of  # noqa: F401 - collect_garbage: autouse fixture

import dicomnb
from dicomnb.core.errors import AssociationAborted, ConnectionFailed, QueryFailed
from dicomnb.core.nodes import CallingNode, DicomNode
from dicomnb.core.retrieval import Expected, Landing
from dicomnb.core.tcs import EXPLICIT_LE, IMPLICIT_LE
from dicomnb.sources import retrieve
from dicomnb.sources import upperlayer as ul
from dicomnb.sources.dimse import echo

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test CA, a server certificate for 127.0.0.1 and a client one it signed, a rogue CA."""
    require_tool("openssl")
    import peers

    return peers.make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def storescp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """storescp's folder: its log, and what it receives in ``received``."""
    return tmp_path_factory.mktemp("storescp")


@pytest.fixture(scope="module")
def storescp_tls(storescp_root: Path, certificates: dict[str, Path]) -> Iterator[Any]:
    """storescp over TLS, requiring a client certificate signed by the test CA."""
    require_tool("storescp")
    require_module("pynetdicom")
    import peers

    with peers.run_storescp_tls(storescp_root, certificates) as peer:
        yield peer
        assert not peers._children(peer.pid)  # one process: no association left a fork behind
    with pytest.raises(ProcessLookupError):  # stopped, and no child left: it never forks
        os.kill(peer.pid, 0)


def tls_node(peer: Any, certificates: dict[str, Path], ca: str = "ca", client: str | None = "client") -> DicomNode:
    """A node for ``peer`` trusting ``ca`` and presenting ``client``'s certificate (None: none)."""
    return node_of(peer, tls_ca=str(certificates[ca]),
                   tls_cert=str(certificates[client]) if client else None,
                   tls_key=str(certificates[f"{client}_key"]) if client else None)


# --- pynetdicom (C-ECHO, the public verbs) ---------------------------------------------------------

def test_echo_over_tls(storescp_tls: Any, certificates: dict[str, Path]) -> None:
    assert echo(tls_node(storescp_tls, certificates), timeout=5) > 0
    node = tls_node(storescp_tls, certificates)
    dicomnb.add_node("tls", node.aet, node.host, node.port, tls_ca=node.tls_ca, tls_cert=node.tls_cert,
                     tls_key=node.tls_key)
    assert dicomnb.echo("tls", timeout=5) > 0


def test_echo_without_a_client_certificate(storescp_tls: Any, certificates: dict[str, Path]) -> None:
    # TLS 1.3: the handshake ends before the server checks us; it refuses on the first read.
    with pytest.raises(ConnectionFailed, match="TLS refused.*client certificate"):
        echo(tls_node(storescp_tls, certificates, client=None), timeout=5)


def test_echo_with_a_client_certificate_the_server_does_not_trust(storescp_tls: Any,
                                                                  certificates: dict[str, Path]) -> None:
    with pytest.raises(ConnectionFailed, match="TLS refused.*client certificate"):
        echo(tls_node(storescp_tls, certificates, client="rogue"), timeout=5)


def test_echo_trusting_only_a_rogue_ca(storescp_tls: Any, certificates: dict[str, Path]) -> None:
    with pytest.raises(ConnectionFailed, match="TLS refused.*CERTIFICATE_VERIFY_FAILED.*--tls-ca"):
        echo(tls_node(storescp_tls, certificates, ca="rogue"), timeout=5)


def test_echo_without_tls_on_the_tls_port(storescp_tls: Any) -> None:
    started = time.monotonic()
    with pytest.raises(AssociationAborted, match="closed the connection.*if it wants TLS, give the node --tls-ca"):
        echo(node_of(storescp_tls), timeout=3)
    assert time.monotonic() - started < 3


# --- the lean upper layer (retrieval) ----------------------------------------------------------------

def test_lean_layer_echo_and_store_over_tls(storescp_tls: Any, certificates: dict[str, Path],
                                            storescp_root: Path) -> None:
    contexts = [ul.PresentationContext(1, VERIFICATION, [IMPLICIT_LE]),
                ul.PresentationContext(3, CT_IMAGE, [EXPLICIT_LE]),
                ul.PresentationContext(5, retrieve.GET_MODEL, [IMPLICIT_LE])]
    conn = retrieve._open(tls_node(storescp_tls, certificates), CallingNode(), contexts, {}, timeout=5)
    try:
        assert isinstance(conn.sock, ssl.SSLSocket) and conn.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert [c.result for c in contexts] == [0, 0, 3]  # storescp offers no C-GET: abstract syntax refused
        assert contexts[1].transfer_syntax == EXPLICIT_LE
        assert 0 < conn.peer_max_pdu < 100_000  # storescp's 16 kB: the data set below goes in several PDUs
        conn.send_message(1, ul.encode_command({ul.AFFECTED_SOP_CLASS: VERIFICATION,
                                                ul.COMMAND_FIELD: ul.C_ECHO_RQ, ul.MESSAGE_ID: 7,
                                                ul.DATA_SET_TYPE: ul.NO_DATA_SET}))
        answer = conn.read_message()
        assert (answer.command_field, answer.number(ul.RESPONDED_TO), answer.number(ul.STATUS)) == (
            ul.C_ECHO_RSP, 7, 0)
        ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
        raw = (TEST_FILES / "CT_small.dcm").read_bytes()
        data = raw[ds.file_meta.FileMetaInformationGroupLength + 144:]
        assert ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
        conn.send_message(3, ul.encode_command({ul.AFFECTED_SOP_CLASS: CT_IMAGE, ul.COMMAND_FIELD: ul.C_STORE_RQ,
                                                ul.MESSAGE_ID: 8, ul.PRIORITY: 0, ul.DATA_SET_TYPE: 0,
                                                ul.AFFECTED_SOP_INSTANCE: ds.SOPInstanceUID}), data)
        stored = conn.read_message()
        assert (stored.command_field, stored.number(ul.RESPONDED_TO), stored.number(ul.STATUS)) == (
            ul.C_STORE_RSP, 8, 0)
        conn.send(ul.RELEASE_RQ_PDU)
        assert conn.read_pdu()[0] == ul.RELEASE_RP
    finally:
        conn.close()
    received = list((storescp_root / "received").glob(f"*{ds.SOPInstanceUID}*"))
    # written bit-preserving (+B): the data set arrived byte for byte through TLS and PDU splitting
    assert len(received) == 1 and received[0].read_bytes().endswith(data)


def test_lean_layer_public_entry_over_tls(storescp_tls: Any, certificates: dict[str, Path]) -> None:
    # list_instances associates over TLS, finds no C-FIND context accepted, and releases.
    with pytest.raises(QueryFailed, match="does not offer Study Root C-FIND") as info:
        retrieve.list_instances(tls_node(storescp_tls, certificates), CT_STUDY, timeout=5)
    assert info.value.status == 0x0122
    assert echo(tls_node(storescp_tls, certificates), timeout=5) > 0  # released cleanly: it serves again


@pytest.mark.parametrize(("ca", "client", "match"), [
    pytest.param("rogue", "client", "TLS refused.*CERTIFICATE_VERIFY_FAILED.*--tls-ca", id="rogue-ca"),
    pytest.param("ca", None, "TLS refused.*client certificate", id="no-client-cert"),
    pytest.param("ca", "rogue", "TLS refused.*client certificate", id="untrusted-client-cert"),
])
def test_lean_layer_tls_refused(storescp_tls: Any, certificates: dict[str, Path], ca: str, client: str | None,
                                match: str) -> None:
    node = tls_node(storescp_tls, certificates, ca=ca, client=client)
    with pytest.raises(ConnectionFailed, match=match):
        retrieve.list_instances(node, CT_STUDY, timeout=5)
    with pytest.raises(ConnectionFailed, match=match):
        retrieve.retrieve_dimse(node, ct_landing(), timeout=5)


def test_lean_layer_without_tls_on_the_tls_port(storescp_tls: Any) -> None:
    started = time.monotonic()
    with pytest.raises(AssociationAborted, match="closed the connection.*if it wants TLS, give the node --tls-ca"):
        retrieve.list_instances(node_of(storescp_tls), CT_STUDY, timeout=3)
    assert time.monotonic() - started < 3


def ct_landing() -> Landing:
    return Landing([Expected(CT_STUDY, CT_SERIES, CT_INSTANCE, CT_IMAGE)], dicomnb.catalog.add_items,
                   source="dimse", origin="tls")
