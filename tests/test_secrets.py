"""DICOMweb nodes and their secrets: validation, the JSON store, the command line, and the
secret that is never written, shown or pickled."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

import dicomnb
from dicomnb import cli
from dicomnb.core.errors import ConfigError, CriteriaError
from dicomnb.core.nodes import DicomNode, DicomWebNode, NodeStore
from dicomnb.core.secrets import Secret, authorization, forget_secret, secret_for, set_secret

URL = "http://127.0.0.1:8042/dicom-web"
CANARY = "canary-7f3e9a61c2"


@pytest.fixture(autouse=True)
def no_remembered_secrets() -> None:
    for name in ("web", "pacs"):
        forget_secret(name)


def test_node_is_validated_and_normalised() -> None:
    node = DicomWebNode(" web ", URL + "/", headers={"X-Site": " radiology "})  # type: ignore[arg-type]
    assert (node.name, node.url, node.qido, node.wado) == ("web", URL, URL, URL)
    assert node.headers == (("X-Site", "radiology"),) and node.auth == "none" and not node.tls
    split = DicomWebNode("web", URL, qido_url="https://h/qido/", wado_url="https://h/wado")
    assert (split.qido, split.wado) == ("https://h/qido", "https://h/wado") and split.tls
    assert "DICOMweb" in node.describe() and "basic auth" in DicomWebNode(
        "web", URL, auth="basic", user="alice").describe()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"url": ""}, "DICOMweb URL is blank"),
        ({"url": "ftp://h/dicom-web"}, "not an http"),
        ({"url": "http://alice:pw@h/dicom-web"}, "user name or password"),
        ({"url": "http://h/dicom-web#x"}, "fragment"),
        ({"qido_url": "qido"}, "QIDO-RS URL"),
        ({"headers": {"Authorization": "Bearer x"}}, "never stored"),
        ({"headers": {"Cookie": "s=1"}}, "never stored"),
        ({"headers": {"Bad Name": "v"}}, "not an HTTP header name"),
        ({"headers": {"X-A": "one\r\nX-B: two"}}, "not one line"),
        ({"auth": "digest"}, "unknown authentication"),
        ({"auth": "basic"}, "needs a user name"),
        ({"user": "alice"}, "only used with --auth basic"),
        ({"auth": "basic", "user": "a:b"}, "without ':'"),
        ({"secret_env": "TOKEN"}, "needs --auth basic or bearer"),
        ({"auth": "bearer", "secret_env": "1TOKEN"}, "not an environment variable name"),
        ({"auth": "bearer", "secret_env": "MY-TOKEN"}, "not an environment variable name"),
    ],
)
def test_unusable_values_are_refused(changes: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"name": "web", "url": URL}
    values.update(changes)
    with pytest.raises(ConfigError, match=message):
        DicomWebNode(**values)  # type: ignore[arg-type]


def test_store_keeps_both_kinds_and_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_TOKEN", CANARY)
    store = NodeStore(tmp_path / "nodes.json")
    store.add(DicomNode("pacs", "ORTHANC", "127.0.0.1", 4242))
    web = DicomWebNode("web", URL, headers={"X-Site": "a"}, auth="bearer", secret_env="WEB_TOKEN")
    store.add(web)
    set_secret("web", CANARY)
    text = (tmp_path / "nodes.json").read_text()
    assert CANARY not in text and json.loads(text)["nodes"][1] == {
        "type": "dicomweb", "name": "web", "url": URL, "qido_url": None, "wado_url": None,
        "headers": {"X-Site": "a"}, "auth": "bearer", "user": None, "secret_env": "WEB_TOKEN"}
    again = NodeStore.load(tmp_path / "nodes.json")
    assert again.get("web") == web and isinstance(again.get("pacs"), DicomNode)


def test_secret_never_shows_itself() -> None:
    secret = Secret(CANARY)
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret])):
        assert CANARY not in shown and "****" in shown
    assert secret.reveal() == CANARY and secret == Secret(CANARY) and bool(secret)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)
    with pytest.raises(ConfigError, match="one line"):
        Secret("a\nb")


def test_where_a_secret_comes_from(monkeypatch: pytest.MonkeyPatch) -> None:
    node = DicomWebNode("web", URL, auth="basic", user="alice", secret_env="WEB_PASSWORD")
    monkeypatch.delenv("WEB_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="set the environment variable WEB_PASSWORD") as info:
        secret_for(node, prompt=None)
    assert "dicomnb.set_secret('web')" in str(info.value)
    set_secret("web", "from-python")
    assert secret_for(node) == Secret("from-python")
    monkeypatch.setenv("WEB_PASSWORD", "from-env")  # the environment wins, read at each request
    assert secret_for(node) == Secret("from-env")
    monkeypatch.delenv("WEB_PASSWORD")
    forget_secret("web")
    asked: list[str] = []
    assert secret_for(node, prompt=lambda name: asked.append(name) or Secret("typed")) == Secret("typed")
    assert secret_for(node) == Secret("typed") and asked == ["web"]  # asked once, then remembered
    assert secret_for(DicomWebNode("open", URL)) is None


def test_authorization_header() -> None:
    basic = DicomWebNode("web", URL, auth="basic", user="alice")
    assert authorization(basic, Secret("s3cret")) == "Basic YWxpY2U6czNjcmV0"
    assert authorization(DicomWebNode("web", URL, auth="bearer"), Secret("tok")) == "Bearer tok"
    assert authorization(DicomWebNode("web", URL), None) is None


def test_add_node_python_api() -> None:
    node = dicomnb.add_node("web", dicomweb=URL, auth="bearer", secret_env="WEB_TOKEN")
    assert isinstance(node, DicomWebNode) and dicomnb.get_node("web") == node
    with pytest.raises(ConfigError, match="belong to DIMSE nodes"):
        dicomnb.add_node("x", dicomweb=URL, aet="A")
    with pytest.raises(ConfigError, match="belong to DICOMweb nodes"):
        dicomnb.add_node("x", "A", "127.0.0.1", 104, auth="basic")
    with pytest.raises(ConfigError, match="wado-rs"):
        dicomnb.retrieve("web", "1.2.3", method="c-get")
    dicomnb.add_node("pacs", "PACS", "127.0.0.1", 104)
    with pytest.raises(ConfigError, match="DIMSE node: retrieve it with c-get or c-move or wado-uri"):
        dicomnb.retrieve("pacs", "1.2.3", method="wado-rs")
    with pytest.raises(ConfigError, match="unknown retrieve method"):
        dicomnb.retrieve("pacs", "1.2.3", method="ftp")
    with pytest.raises(CriteriaError, match="needs a limit"):
        dicomnb.query("web", page=3)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_add_list(capsys: pytest.CaptureFixture[str], isolated_config: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_PASSWORD", CANARY)
    status, out, err = run(capsys, "node", "add", "web", "--dicomweb", URL, "--auth", "basic", "--user",
                           "alice", "--secret-env", "WEB_PASSWORD", "--header", "X-Site: radiology")
    assert status == 0 and out.strip() == f"added web: DICOMweb {URL} (basic auth)", err
    status, out, _ = run(capsys, "node", "list", "--json")
    listed = json.loads(out)["nodes"][0]
    assert listed["type"] == "dicomweb" and listed["headers"] == {"X-Site": "radiology"}
    assert listed["user"] == "alice" and listed["secret_env"] == "WEB_PASSWORD"
    status, out, _ = run(capsys, "node", "list")
    assert out.strip() == f"web\tDICOMweb {URL} (basic auth)"
    assert all(CANARY not in p.read_text() for p in isolated_config.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dicomweb", URL, "--header", "no colon"], "'Name: value'"),
        (["--dicomweb", URL, "--header", "Authorization: Bearer x"], "never stored"),
        (["--dicomweb", "http://alice:pw@h/dw"], "user name or password"),
        (["--dicomweb", URL, "--aet", "A"], "belong to DIMSE nodes"),
        (["--dicomweb", URL, "--auth", "basic"], "needs a user name"),
    ],
)
def test_cli_unusable_dicomweb_arguments_exit_2(capsys: pytest.CaptureFixture[str], args: list[str],
                                               message: str) -> None:
    status, _, err = run(capsys, "node", "add", "web", *args)
    assert status == cli.EXIT_USAGE and message in err and ":pw@" not in err  # never echoed back
    assert dicomnb.nodes() == []
