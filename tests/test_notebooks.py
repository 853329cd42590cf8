"""The notebooks run top to bottom in a real kernel."""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


def run_notebook(name: str, tmp_path: Path) -> tuple[list[dict], str]:
    """Run ``notebooks/name`` in a kernel; return its outputs and their text."""
    shutil.copy(NOTEBOOKS / name, tmp_path / name)
    notebook = nbformat.read(tmp_path / name, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    return outputs, text


def test_viewers_notebook_shows_every_kind_of_view(tmp_path: Path) -> None:
    outputs, text = run_notebook("viewers.ipynb", tmp_path)
    views = [o["data"]["text/plain"] for o in outputs if "text/html" in o.get("data", {})
             and o["data"]["text/plain"].startswith("<dicomnb ")]
    kinds = [view.split()[1] for view in views]
    assert kinds == ["image", "stack", "stack", "mpr", "sr", "waveform", "audio", "pdf", "header",
                     "picture", "attachments", "study"]
    # each is interactive in the kernel, and keeps a static rendering for readers without one
    assert all("application/vnd.jupyter.widget-view+json" in o["data"] for o in outputs
               if o.get("data", {}).get("text/plain", "").startswith("<dicomnb "))
    html = "\n".join(o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {}))
    assert html.count('<img src="data:image/png;base64,') >= 8
    assert "OFFIS Structured Reporting Test Document" in html and "<audio" in html and "<iframe" in html
    assert "Lead V6" in text and "(256, 256, 3)" in text  # the leads' labels; a JPEG decoded


@pytest.mark.parametrize("name", ["quickstart.ipynb"])
def test_notebook_runs(name: str, tmp_path: Path) -> None:
    outputs, text = run_notebook(name, tmp_path)
    assert "PasswordRequired" in text
    assert "Imported 31 instances" in text  # the dialog's Local tab, driven from a cell
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)  # the dialog
    assert "김희중" in text or "Люкceмбypг" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the slice rendered inline
    assert "<dicomnb image view" in text and "<dicomnb sr view: test-SR.dcm>" in text  # dicomnb.show
    assert "7 instances retrieved from demo (c-get)" in text  # the demo archive section
    assert "<DemoArchive stopped" in text


# --- the notebooks that talk to archives: the demo archive, and the suite's Orthanc --------------------

def outputs_html(outputs: list[dict]) -> str:
    """The HTML a reader sees (DataFrames whole, views' static renderings)."""
    return "\n".join(o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {}))


def widgets(outputs: list[dict]) -> int:
    """How many interactive widgets the notebook displayed."""
    return sum("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)


def _orthanc_rest(http_port: int, path: str, method: str = "GET", body: bytes | None = None) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{http_port}{path}", data=body, method=method,
                                     headers={"Content-Type": "application/dicom"} if body else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = response.read()
    return json.loads(answer) if answer else None


@pytest.fixture(scope="module")
def orthanc_as_on_binder(orthanc: Any) -> Iterator[Any]:
    """The session's Orthanc holding, besides its own files, the demo archive's multi-series studies
    (Doe^Archibald, Doe^Peter: pydicom's dicomdirtests), as Binder's Orthanc does. Other tests count
    the studies of the session's Orthanc: what is added here is deleted again at the end."""
    from dicomnb.demo import sample_files

    added = []
    try:
        for path in sample_files():
            if "dicomdirtests" in path.parts:
                answer = _orthanc_rest(orthanc.http_port, "/instances", "POST", path.read_bytes())
                assert answer["Status"] in ("Success", "AlreadyStored"), answer
                if answer["Status"] == "Success":
                    added.append(answer["ID"])
        assert len(added) == 31
        yield orthanc
    finally:
        for instance in added:
            _orthanc_rest(orthanc.http_port, f"/instances/{instance}", "DELETE")


@pytest.fixture
def orthanc_env(orthanc_as_on_binder: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The environment Binder's start script gives the kernel: Orthanc's addresses, and the calling
    node Orthanc sends C-MOVE to (saved in this test's configuration folder, which the kernel reads)."""
    from dicomnb.core.nodes import CallingNode, NodeStore

    peer = orthanc_as_on_binder
    monkeypatch.setenv("DICOMNB_ORTHANC_DIMSE", f"{peer.aet}@127.0.0.1:{peer.port}")
    monkeypatch.setenv("DICOMNB_ORTHANC_HTTP", f"http://127.0.0.1:{peer.http_port}")
    NodeStore.load().set_calling(CallingNode(aet=peer.move_aet, port=peer.move_port))
    return peer


@pytest.mark.integration
def test_pacs_notebook_queries_retrieves_and_manages_downloads(orthanc_env: Any, tmp_path: Path) -> None:
    outputs, text = run_notebook("pacs.ipynb", tmp_path)
    html = outputs_html(outputs)
    # the demo archive: criteria, series, C-GET and C-MOVE
    assert "6 studies from demo" in text and "11 instances in 3 series" in text
    assert "3 studies from demo" in text and "the modality was checked on the series" in text
    assert re.search(r"\d+ instances retrieved from demo \(c-get\)", text)
    assert re.search(r"\d+ instances retrieved from demo \(c-move\)", text)
    assert "<dicomnb stack view: Doe^Archibald" in text
    # the download manager: paused, incomplete after the archive went away, then retried
    assert "cancelled: 1 of 11 instances arrived from pacs (c-get)" in text
    assert html.count("<td>paused</td>") == 2
    assert len(re.findall(r"incomplete: \d+ missing +pacs \(DEMO@127.0.0.1:\d+\): connection refused", text)) == 2
    assert "2 jobs retried; progress of the retrieve: (1, 11) ... (11, 11)" in text
    assert widgets(outputs) >= 2  # the stack view, the download panel
    assert "7 complete jobs cleared; <downloads: none>" in text
    # Orthanc: C-ECHO, then C-GET, C-MOVE (to the Storage SCP it knows) and WADO-URI
    assert f"ORTHANC@127.0.0.1:{orthanc_env.port} answers C-ECHO" in text
    assert "2 studies from orthanc" in text
    assert "1 instance retrieved from orthanc (c-get)" in text
    assert "1 instance retrieved from orthanc (c-move)" in text
    assert "4 instances retrieved from orthanc (wado-uri)" in text
    assert "<DemoArchive stopped" in text


@pytest.mark.integration
def test_dicomweb_notebook_searches_and_retrieves_with_progress_per_series(orthanc_env: Any,
                                                                          tmp_path: Path) -> None:
    outputs, text = run_notebook("dicomweb.ipynb", tmp_path)
    assert f"http://127.0.0.1:{orthanc_env.http_port}/dicom-web answers QIDO-RS" in text
    assert "stopped after 5 studies" in text and "next page: True" in text
    assert "3 studies from orthanc-web" in text  # Doe^P*, MR
    assert "Люк* → ['Люкceмбypг']" in text and "김* → ['김희중']" in text
    assert "11 instances retrieved from orthanc-web (wado-rs)" in text
    assert re.search(r"MR 700: ANGIO Projected from +C +.*complete: 7 instances", text)
    assert "['dicomweb']" in text and "<dicomnb stack view: Doe^Peter" in text
    assert widgets(outputs) >= 2  # the download panel, the stack view


@pytest.mark.integration
def test_commands_notebook_runs_commands_links_and_manifests(orthanc_env: Any, tmp_path: Path) -> None:
    outputs, text = run_notebook("commands.ipynb", tmp_path)
    assert "8 instances (8 new, 0 duplicates)" in text  # $dicom:get -l
    # the weasis:// link: its three commands, in order
    assert re.search(r"\$dicom:get +2 patients.*\n\$dicom:close +closed 7 instances.*\n\$image:get +0 patients.*1 images",
                     text)
    assert "1 picture: ['key-image.png']" in text
    assert "CommandError: unknown command $dicom:show" in text and "left in the catalog: 0 instances" in text
    assert "manifest.xml: xml, version 2.5, Doe^Archibald, 3 series, 3 instances" in text
    assert "manifest.json: json, version 2.5, Doe^Archibald, 1 series, 4 instances" in text
    assert f"http://127.0.0.1:{orthanc_env.http_port}/wado?requestType=WADO&studyUID=" in text
    # retrieved from Orthanc: -w, retrieve_manifest, then -i finds them in the store
    assert "-w: 1 patients, 1 studies, 3 series, 3 instances (3 new, 0 duplicates) | retrieved: 3" in text
    assert "messages: ['Spine X-rays: 3 views, sent by the PACS']" in text
    assert "retrieve_manifest: 4 instances retrieved" in text and "progress: (4, 4)" in text
    assert "| retrieved: 0" in text
    # overrideDicomTagsList: the catalog shows the portal's values, the file keeps the archive's
    assert "shown in place of the files' values: {'PatientName': 'Portal^Archie', 'StudyDescription': " in text
    assert re.search(r"Portal\^Archie +Spine, 3 views", text) and "the file itself: Doe^Archibald" in text
    # dicomnb open --json from a shell cell: $dicom:get -l, then $dicom:rs over DICOMweb
    assert "exit status 0" in text
    assert "retrieved: 4 | commands: ['dicom:get', 'dicom:rs']" in text


@pytest.mark.parametrize("name", ["dicomweb.ipynb", "commands.ipynb"])
def test_without_orthanc_the_notebooks_say_so_and_run_to_the_end(name: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DICOMNB_ORTHANC_DIMSE", raising=False)
    monkeypatch.delenv("DICOMNB_ORTHANC_HTTP", raising=False)
    outputs, text = run_notebook(name, tmp_path)
    if name == "dicomweb.ipynb":
        assert "No DICOMweb archive here: DICOMNB_ORTHANC_HTTP is not set" in text
        assert len(text.splitlines()) <= 3  # and nothing after it
    else:
        assert "No Orthanc here (DICOMNB_ORTHANC_HTTP is not set)" in text
        assert "manifest.xml: xml, version 2.5, Doe^Archibald, 3 series, 3 instances" in text  # read, not fetched
        assert "shown in place of the files' values: {'PatientName': 'Portal^Archie', 'StudyDescription': " in text
        assert "3 instances retrieved from demo (c-get)" in text and "4 instances retrieved from demo (c-get)" in text
        assert "1 patients, 2 studies, 4 series, 7 instances" in text  # then opened with $dicom:get -l
        assert "exit status 0" in text


def test_media_notebook_shows_zips_a_password_prompt_missing_files_and_attachments(tmp_path: Path) -> None:
    outputs, text = run_notebook("media.ipynb", tmp_path)
    html = outputs_html(outputs)
    assert "1 patients, 2 studies, 4 series, 7 instances" in text  # the plain ZIP
    assert "PasswordRequired: " in text and "is encrypted: give its password" in text
    assert "WrongPassword: the password does not open" in text
    assert "1 patients, 1 studies, 2 series, 7 instances (7 new" in text  # then the right password
    # the DICOMDIR: its tree, the file removed, the attachments added, each shown
    assert "2 patients, 6 studies, 13 series, 30 instances" in text
    assert "2 attachments, 1 missing, 0 errors" in text
    assert "Brain-MRA" in html and "<th>missing</th>" in html
    assert "98892003/MR2/6605" in text and "file not found on the media" in text
    assert "report.pdf" in html and "spreadsheet" in text
    kinds = [o["data"]["text/plain"].split()[1] for o in outputs
             if o.get("data", {}).get("text/plain", "").startswith("<dicomnb ")]
    assert kinds == ["pdf", "attachments"]
    assert "<iframe" in html and "measurements.csv" in html
    # the same disc as a ZIP, and the command line with a password file
    assert "missing: ['98892003/MR2/6605'] attachments: ['pdf', 'spreadsheet']" in text
    assert "exit status 0" in text and "'instances': 14" in text
