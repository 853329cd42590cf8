"""DICOM nodes: validation, the JSON store, the public verbs and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dicomnb
from dicomnb import cli
from dicomnb.core.errors import ConfigError, InputError
from dicomnb.core.nodes import CallingNode, DicomNode, NodeStore


def test_node_is_validated_and_normalised() -> None:
    node = DicomNode(" pacs ", " ORTHANC ", " 127.0.0.1 ", "4242")  # type: ignore[arg-type]
    assert (node.name, node.aet, node.host, node.port) == ("pacs", "ORTHANC", "127.0.0.1", 4242)
    assert not node.tls and node.wado_url is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"aet": ""}, "blank"),
        ({"aet": "   "}, "blank"),
        ({"aet": "A" * 17}, "17 characters: 16 at most"),
        ({"aet": "A\\B"}, "backslash"),
        ({"aet": "A\tB"}, "control"),
        ({"aet": "ÄRZTE"}, "non-ASCII"),
        ({"port": 0}, "out of range"),
        ({"port": 65536}, "out of range"),
        ({"port": "http"}, "not a number"),
        ({"host": ""}, "host is blank"),
        ({"name": " "}, "name is blank"),
        ({"wado_url": "ftp://host/wado"}, "not an http"),
        ({"wado_url": "http://"}, "not an http"),
        ({"tls_key": "/k.pem"}, "needs its certificate"),
        ({"tls_cert": "/c.pem"}, "needs the server's CA"),
    ],
)
def test_invalid_nodes_are_typed_errors(changes: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"name": "pacs", "aet": "ORTHANC", "host": "127.0.0.1", "port": 4242}
    values.update(changes)
    with pytest.raises(ConfigError, match=message) as info:
        DicomNode(**values)  # type: ignore[arg-type]
    assert isinstance(info.value, InputError)


def test_sixteen_characters_and_https_wado_are_fine() -> None:
    node = DicomNode("pacs", "A" * 16, "pacs.example", 104, wado_url="https://pacs.example/wado")
    assert node.aet == "A" * 16


def test_calling_node_defaults_and_validation() -> None:
    assert CallingNode() == CallingNode("DICOMNB", 11113, "127.0.0.1")
    with pytest.raises(ConfigError, match="calling AE title"):
        CallingNode(aet="")
    with pytest.raises(ConfigError, match="Storage SCP port"):
        CallingNode(port=70000)


def test_store_round_trip(isolated_config: Path) -> None:
    store = NodeStore.load()
    assert store.path == isolated_config / "nodes.json" and len(store) == 0
    assert not store.path.exists()  # nothing written until something changes
    store.add(DicomNode("orthanc", "ORTHANC", "127.0.0.1", 4242, wado_url="http://127.0.0.1:8042/wado"))
    store.add(DicomNode("tls", "SECURE", "pacs.example", 2762, tls_ca="/etc/ca.pem",
                        tls_cert="/c.pem", tls_key="/k.pem"))
    store.set_calling(CallingNode("MYNB", 11200))
    again = NodeStore.load()
    assert again.nodes == store.nodes and again.calling == CallingNode("MYNB", 11200)
    assert again.names() == ["orthanc", "tls"] and "tls" in again and again.get("tls").tls
    data = json.loads(store.path.read_text())
    assert data["version"] == 1 and [n["type"] for n in data["nodes"]] == ["dimse", "dimse"]
    assert not any("pass" in key for node in data["nodes"] for key in node)  # no secret ever stored
    assert not list(isolated_config.glob(".part-*"))  # atomic writes leave no temporary file


def test_add_refuses_duplicates_unless_replace() -> None:
    store = NodeStore.load()
    store.add(DicomNode("pacs", "ONE", "127.0.0.1", 104))
    with pytest.raises(ConfigError, match="exists already.*--replace"):
        store.add(DicomNode("pacs", "TWO", "127.0.0.1", 104))
    store.add(DicomNode("pacs", "TWO", "127.0.0.1", 104), replace=True)
    assert NodeStore.load().get("pacs").aet == "TWO" and len(NodeStore.load()) == 1


def test_remove_and_get_of_unknown_name_list_the_known_ones() -> None:
    store = NodeStore.load()
    with pytest.raises(ConfigError, match="none yet"):
        store.remove("x")
    store.add(DicomNode("a", "A", "127.0.0.1", 104))
    store.add(DicomNode("b", "B", "127.0.0.1", 104))
    with pytest.raises(ConfigError, match=r"no node named 'x' \(known nodes: a, b\)"):
        store.remove("x")
    with pytest.raises(ConfigError, match="known nodes: a, b"):
        store.get("x")
    assert store.remove("a").aet == "A" and NodeStore.load().names() == ["b"]


@pytest.mark.parametrize(
    "content",
    ["{not json", "[]", '{"nodes": 3}', '{"nodes": [{"type": "dicomweb", "name": "w"}]}',
     '{"nodes": [{"name": "a", "aet": "", "host": "h", "port": 1}]}',
     '{"nodes": [{"name": "a", "aet": "A", "host": "h", "port": 1, "password": "x"}]}',
     '{"calling": {"aet": "A", "port": 0}}'],
)
def test_a_corrupt_file_is_a_typed_error_naming_it(isolated_config: Path, content: str) -> None:
    path = isolated_config / "nodes.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=str(path)):
        NodeStore.load()


def test_public_verbs(isolated_config: Path, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a connection is made\n")
    node = dicomnb.add_node("pacs", "PACS", "127.0.0.1", 104, tls_ca=ca)
    assert node.tls_ca == str(ca) and [n.name for n in dicomnb.nodes()] == ["pacs"]
    assert dicomnb.remove_node("pacs") == node and dicomnb.nodes() == []
    with pytest.raises(ConfigError, match="no node named 'pacs'"):
        dicomnb.echo("pacs")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_add_list_remove(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, out, _ = run(capsys, "node", "list")
    assert status == 0 and "no nodes" in out
    status, out, _ = run(capsys, "node", "add", "orthanc", "--aet", "ORTHANC", "--host", "127.0.0.1",
                         "--port", "4242", "--wado-url", "http://127.0.0.1:8042/wado")
    assert status == 0 and out.strip() == "added orthanc: ORTHANC@127.0.0.1:4242"
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    status, out, _ = run(capsys, "node", "add", "secure", "--aet", "SECURE", "--host", "pacs.example",
                         "--port", "2762", "--tls-ca", str(ca))
    assert status == 0 and out.strip().endswith("(TLS)")
    status, out, _ = run(capsys, "node", "list", "--json")
    listed = json.loads(out)["nodes"]
    assert status == 0 and [n["name"] for n in listed] == ["orthanc", "secure"]
    assert listed[0] == {"type": "dimse", "name": "orthanc", "aet": "ORTHANC", "host": "127.0.0.1",
                         "port": 4242, "tls_ca": None, "tls_cert": None, "tls_key": None,
                         "wado_url": "http://127.0.0.1:8042/wado"}
    assert listed[1]["tls_ca"] == str(ca)
    status, out, _ = run(capsys, "node", "list")
    assert "orthanc\tORTHANC@127.0.0.1:4242 WADO http://127.0.0.1:8042/wado" in out
    assert "secure\tSECURE@pacs.example:2762 (TLS)" in out
    status, out, _ = run(capsys, "node", "remove", "orthanc")
    assert status == 0 and out.strip() == "removed orthanc"
    assert [n.name for n in dicomnb.nodes()] == ["secure"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["node", "add", "x", "--aet", "A" * 17, "--host", "h", "--port", "104"], "16 at most"),
        (["node", "add", "x", "--aet", "A", "--host", "h", "--port", "0"], "out of range"),
        (["node", "add", "x", "--aet", "A", "--host", "h", "--port", "104", "--tls-ca", "/no/such.pem"],
         "no such file"),
        (["node", "add", "x", "--aet", "A", "--host", "h", "--port", "104", "--wado-url", "wado"],
         "not an http"),
        (["node", "remove", "nobody"], "no node named 'nobody'"),
        (["echo", "nobody"], "no node named 'nobody'"),
    ],
)
def test_cli_unusable_arguments_exit_2(capsys: pytest.CaptureFixture[str], args: list[str],
                                       message: str) -> None:
    status, _, err = run(capsys, *args)
    assert status == cli.EXIT_USAGE and message in err


def test_cli_duplicate_needs_replace(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["node", "add", "x", "--aet", "A", "--host", "127.0.0.1", "--port", "104"]
    assert run(capsys, *base)[0] == 0
    status, _, err = run(capsys, *base)
    assert status == 2 and "--replace" in err
    assert run(capsys, *base, "--replace")[0] == 0


def test_cli_missing_argument_is_usage(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "node", "add", "x", "--host", "h", "--port", "1")
    assert status == cli.EXIT_USAGE and "--aet required" in err and "--dicomweb" in err
    assert dicomnb.nodes() == []
