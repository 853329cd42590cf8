"""The notebooks run top to bottom in a real kernel."""

from __future__ import annotations

import shutil
from pathlib import Path

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
