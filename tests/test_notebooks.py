"""The notebooks run top to bottom in a real kernel."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


@pytest.mark.parametrize("name", ["quickstart.ipynb"])
def test_notebook_runs(name: str, tmp_path: Path) -> None:
    shutil.copy(NOTEBOOKS / name, tmp_path / name)
    notebook = nbformat.read(tmp_path / name, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "PasswordRequired" in text
    assert "Imported 31 instances" in text  # the dialog's Local tab, driven from a cell
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)  # the dialog
    assert "김희중" in text or "Люкceмбypг" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the slice rendered inline
    assert "7 instances retrieved from demo (c-get)" in text  # the demo archive section
    assert "<DemoArchive stopped" in text
