"""C-ECHO against real servers, and the typed errors of every way it can fail."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_module, require_tool
from netcommon import PEERS, collect_garbage, node_of, pynetdicom_socket_leak  # noqa: F401 - collect_garbage: autouse fixture

import dicomnb
from dicomnb import cli
from dicomnb.core.errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectionFailed,
    SourceError,
)
from dicomnb.core.nodes import CallingNode, DicomNode
from dicomnb.sources.dimse import echo


@pytest.mark.integration
@pytest.mark.parametrize("server", PEERS)
def test_echo_real_servers(request: pytest.FixtureRequest, server: str) -> None:
    peer = request.getfixturevalue(server)
    seconds = echo(node_of(peer))
    assert 0 < seconds < 5
    assert echo(node_of(peer), CallingNode("OTHER"), timeout=5) > 0  # ANY calling AE accepted


@pytest.mark.integration
@pytest.mark.parametrize("server", PEERS)
def test_cli_echo(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str], server: str) -> None:
    peer = request.getfixturevalue(server)
    dicomnb.add_node("pacs", peer.aet, peer.host, peer.port, wado_url=peer.wado_url)
    assert cli.main(["echo", "pacs"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("pacs: C-ECHO ok in ") and out.endswith(" ms")
    assert dicomnb.echo("pacs") > 0


@pytest.mark.integration
def test_peers_hold_the_test_data(orthanc, dcmqrscp, qrscp) -> None:  # type: ignore[no-untyped-def]
    assert orthanc.instances == dcmqrscp.instances == qrscp.instances
    assert len(set(orthanc.instances)) == len(orthanc.instances) >= 16
    assert {"chrRuss.dcm", "chrKoreanMulti.dcm"} <= set(orthanc.files)
    assert orthanc.move_aet == dcmqrscp.move_aet == qrscp.move_aet == "DICOMNB"
    assert len({orthanc.port, orthanc.http_port, orthanc.move_port, dcmqrscp.port, qrscp.port}) == 5


@pytest.mark.integration
def test_rejected_called_ae_title(dcmqrscp) -> None:  # type: ignore[no-untyped-def]
    # dcmqrscp only answers to the AE titles of its AETable.
    with pytest.raises(AssociationRejected, match="called ae title not recognised") as info:
        echo(node_of(dcmqrscp, aet="NOBODY"))
    error = info.value
    assert error.reason == "called ae title not recognised" and error.source == "service user"
    assert error.result == "rejected permanent"
    assert "--aet" in str(error) and "NOBODY@127.0.0.1" in str(error)


@pytest.mark.integration
def test_cli_network_failure_exits_4(dcmqrscp, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    dicomnb.add_node("wrong", "NOBODY", dcmqrscp.host, dcmqrscp.port)
    assert cli.main(["echo", "wrong"]) == cli.EXIT_NETWORK
    assert "rejected the association" in capsys.readouterr().err


def closed_port() -> int:
    import peers

    return peers.free_port()  # nothing listens there once the probing socket is closed


@pynetdicom_socket_leak
def test_connection_refused(capsys: pytest.CaptureFixture[str]) -> None:
    require_module("pynetdicom")
    port = closed_port()
    with pytest.raises(ConnectionFailed, match=f"127.0.0.1:{port}.*connection refused: is the server running"):
        echo(DicomNode("down", "DOWN", "127.0.0.1", port), timeout=5)
    dicomnb.add_node("down", "DOWN", "127.0.0.1", port)
    assert cli.main(["echo", "down", "--timeout", "5"]) == cli.EXIT_NETWORK
    err = capsys.readouterr().err
    assert err.startswith("dicomnb echo: down (DOWN@127.0.0.1:") and "is the server running?" in err


def test_timeout_against_a_silent_peer(silent_peer) -> None:  # type: ignore[no-untyped-def]
    require_module("pynetdicom")
    started = time.monotonic()
    with pytest.raises(ConnectionFailed, match="within the timeout of 1 s") as info:
        echo(DicomNode("silent", "SILENT", "127.0.0.1", silent_peer.port), timeout=1)
    assert isinstance(info.value, SourceError)
    assert time.monotonic() - started < 5


def test_aborted_when_the_peer_hangs_up(hang_up_peer) -> None:  # type: ignore[no-untyped-def]
    require_module("pynetdicom")
    with pytest.raises(AssociationAborted, match="closed the connection"):
        echo(DicomNode("rude", "RUDE", "127.0.0.1", hang_up_peer.port), timeout=5)


def test_missing_pynetdicom_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['pynetdicom'] = None\n"
        "from dicomnb.core.nodes import DicomNode\n"
        "from dicomnb.sources.dimse import echo\n"
        "from dicomnb.errors import DependencyMissing\n"
        "try:\n"
        "    echo(DicomNode('x', 'X', '127.0.0.1', 104))\n"
        "except DependencyMissing as exc:\n"
        "    print(isinstance(exc, ImportError), exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("True pynetdicom is needed")
    assert "pip install 'dicomnb[network]'" in result.stdout


# --- TLS, against pynetdicom's own SCP running over TLS in this process ---------------------------

@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed server certificate for 127.0.0.1 (also the CA) and a client certificate."""
    openssl = require_tool("openssl")
    folder = tmp_path_factory.mktemp("tls")
    made = {}
    for who in ("server", "client"):
        cert, key = folder / f"{who}.pem", folder / f"{who}.key"
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        made[who], made[f"{who}_key"] = cert, key
    return made


@pytest.fixture
def tls_server(certificates: dict[str, Path]) -> Iterator[int]:
    """A Verification SCP over TLS that requires a client certificate signed by ``client.pem``."""
    require_module("pynetdicom")
    from pynetdicom import AE

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certificates["client"])
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(certificates["server"], certificates["server_key"])
    ae = AE(ae_title="TLSSCP")
    ae.add_supported_context("1.2.840.10008.1.1")
    server = ae.start_server(("127.0.0.1", 0), block=False, ssl_context=context)
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()


def test_tls_echo(tls_server: int, certificates: dict[str, Path]) -> None:
    node = DicomNode("tls", "TLSSCP", "127.0.0.1", tls_server, tls_ca=str(certificates["server"]),
                     tls_cert=str(certificates["client"]), tls_key=str(certificates["client_key"]))
    assert echo(node, timeout=5) > 0


@pynetdicom_socket_leak
def test_tls_refused_without_client_certificate(tls_server: int, certificates: dict[str, Path]) -> None:
    node = DicomNode("tls", "TLSSCP", "127.0.0.1", tls_server, tls_ca=str(certificates["server"]))
    with pytest.raises(ConnectionFailed, match="TLS refused.*client certificate"):
        echo(node, timeout=5)


@pynetdicom_socket_leak
def test_tls_refused_by_an_untrusted_server(tls_server: int, certificates: dict[str, Path]) -> None:
    node = DicomNode("tls", "TLSSCP", "127.0.0.1", tls_server, tls_ca=str(certificates["client"]),
                     tls_cert=str(certificates["client"]), tls_key=str(certificates["client_key"]))
    with pytest.raises(ConnectionFailed, match="TLS refused.*CERTIFICATE_VERIFY_FAILED"):
        echo(node, timeout=5)


@pytest.mark.integration
@pynetdicom_socket_leak
def test_tls_refused_by_a_plain_server(qrscp, certificates: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    node = node_of(qrscp, tls_ca=str(certificates["server"]))
    with pytest.raises(ConnectionFailed, match="TLS refused"):
        echo(node, timeout=5)
