"""DICOMweb through the verbs a user types: dicomnb.add_node/echo/query/retrieve and the
command line, against the suite's Orthanc (QIDO-RS, WADO-RS)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydicom
import pytest
from netcommon import CT_INSTANCE, CT_SERIES, CT_STUDY

import dicomnb
from dicomnb import cli
from dicomnb.core.errors import AuthenticationFailed
from dicomnb.core.nodes import DicomWebNode

CANARY = "canary-token-5d1c0b7e"


@pytest.fixture
def web(orthanc: Any) -> str:
    dicomnb.add_node("web", dicomweb=orthanc.dicomweb_url)
    return "web"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.integration
def test_echo_query_and_pages(web: str, orthanc: Any) -> None:
    assert dicomnb.echo(web) > 0
    everything = dicomnb.query(web, limit=0)
    uids = [row["StudyInstanceUID"] for row in everything.rows]
    assert len(uids) == len(set(uids)) >= 5 and CT_STUDY in uids and not everything.limited
    pages, page = [], 1
    while True:
        result = dicomnb.query(web, limit=2, page=page)
        assert result.page == page and len(result) <= 2
        pages.extend(row["StudyInstanceUID"] for row in result.rows)
        if not result.limited:
            break
        page += 1
    assert sorted(pages) == sorted(uids)  # no duplicates, no gaps
    series = dicomnb.query(web, level="series", study_uid=CT_STUDY)
    assert [row["SeriesInstanceUID"] for row in series.rows] == [CT_SERIES]
    assert [r["SOPInstanceUID"] for r in dicomnb.find_instances(web, CT_STUDY)] == [CT_INSTANCE]
    assert isinstance(dicomnb.get_node(web), DicomWebNode)


@pytest.mark.integration
def test_retrieve_into_the_catalog_and_dest(web: str, orthanc: Any, tmp_path: Path) -> None:
    result = dicomnb.retrieve(web, CT_STUDY, dest=tmp_path / "out")
    assert result.complete and result.retrieved == 1 and result.method == "wado-rs"
    (record,) = result.instances
    assert record.SOPInstanceUID == CT_INSTANCE and record.source == "dicomweb" and record.origin == web
    assert pydicom.dcmread(record.path).SOPInstanceUID == CT_INSTANCE
    copies = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(copies) == 1 and copies[0].read_bytes() == Path(record.path).read_bytes()
    assert CT_INSTANCE in set(dicomnb.catalog.instances["SOPInstanceUID"])
    again = dicomnb.retrieve(web, CT_STUDY)
    assert again.retrieved == 0 and again.complete  # the store has it: nothing fetched twice


@pytest.mark.integration
def test_cli_query_page_json_and_retrieve(web: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "echo", web)
    assert status == 0 and out.startswith(f"{web}: QIDO-RS ok in "), err
    status, out, _ = run(capsys, "query", web, "--limit", "2", "--page", "2", "--json")
    answer = json.loads(out)
    assert status == 0 and answer["page"] == 2 and len(answer["rows"]) == 2
    first = json.loads(run(capsys, "query", web, "--limit", "2", "--json")[1])
    assert not {r["StudyInstanceUID"] for r in first["rows"]} & {r["StudyInstanceUID"] for r in answer["rows"]}
    status, out, _ = run(capsys, "query", web, "--patient-name", "CompressedSamples^C*", "--json")
    assert status == 0 and json.loads(out)["rows"]
    status, out, err = run(capsys, "retrieve", web, "--study", CT_STUDY, "--method", "wado-rs",
                           "--dest", str(tmp_path / "dest"), "--json")
    answer = json.loads(out)
    assert status == 0 and answer["missing"] == [] and len(answer["instances"]) == 1, err
    status, _, err = run(capsys, "retrieve", web, "--study", CT_STUDY, "--method", "c-get")
    assert status == cli.EXIT_USAGE and "DICOMweb node" in err and "wado-rs" in err


@pytest.mark.integration
def test_cli_wrong_credentials_exit_3_and_the_secret_never_shows(
        orthanc: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        isolated_config: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The suite's Orthanc wants no credentials: a bearer token is sent and must not leak.
    monkeypatch.setenv("WEB_TOKEN", CANARY)
    status, out, err = run(capsys, "node", "add", "tok", "--dicomweb", orthanc.dicomweb_url, "--auth", "bearer",
                           "--secret-env", "WEB_TOKEN")
    assert status == 0
    caplog.set_level("DEBUG")
    for args in (("echo", "tok"), ("query", "tok", "--json"), ("node", "list", "--json")):
        status, out, err = run(capsys, *args)
        assert status == 0 and CANARY not in out + err
    assert CANARY not in caplog.text and CANARY not in repr(dicomnb.get_node("tok"))
    assert all(CANARY not in p.read_text(errors="replace") for p in isolated_config.rglob("*") if p.is_file())


@pytest.mark.integration
def test_authentication_failed_exits_3(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    import peers

    with peers.run_orthanc(tmp_path / "authed", load=False, users={"alice": "right"}) as peer:
        dicomnb.add_node("authed", dicomweb=peer.dicomweb_url, auth="basic", user="alice", secret_env="PW")
        monkeypatch.setenv("PW", "wrong")
        status, _, err = run(capsys, "echo", "authed")
        assert status == cli.EXIT_PASSWORD and "check the credentials" in err and "wrong" not in err
        with pytest.raises(AuthenticationFailed):
            dicomnb.query("authed")
        monkeypatch.setenv("PW", "right")
        assert dicomnb.echo("authed") > 0
        monkeypatch.delenv("PW")
        status, _, err = run(capsys, "query", "authed")
        assert status == cli.EXIT_USAGE and "set the environment variable PW" in err
