"""The real-browser harness works: Chromium drops a real folder, JupyterLab renders and runs widgets.

The import dialog's browser tests stand on these two facts: a folder dropped through Chromium's
DevTools protocol reaches the page as a directory entry it can walk (the drop zone relies on
``webkitGetAsEntry()``), and ipywidgets render in the JupyterLab the tests start, with a click
in the page running the Python callback. Screenshots: ``test-output/screenshots/test_browser/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from browser import (  # noqa: F401 - the fixtures chromium, jupyter_lab, browser_page, lab_kernel
    BrowserPage,
    LabServer,
    browser_page_fixture,
    chromium_fixture,
    drop_folder,
    jupyter_lab_fixture,
    lab_kernel_fixture,
    open_notebook,
    serve_folder,
    write_notebook,
)

pytestmark = pytest.mark.integration

#: A page whose drop zone walks what is dropped with webkitGetAsEntry(), as the import
#: dialog's drop zone does, and writes what it found (path, kind, size, bytes 128-131) as JSON.
DROP_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>drop test</title></head>
<body style="font-family: sans-serif; margin: 20px">
<div class="dicomnb-test-drop" style="width: 480px; height: 160px; border: 3px dashed #557;
     display: flex; align-items: center; justify-content: center">Drop a folder here</div>
<pre id="found" style="font-size: 13px">nothing dropped yet</pre>
<script>
const zone = document.querySelector('.dicomnb-test-drop');
const found = document.getElementById('found');
zone.addEventListener('dragover', event => { event.preventDefault(); zone.style.background = '#dde'; });
zone.addEventListener('drop', event => {
  event.preventDefault();
  const entries = [...event.dataTransfer.items].map(item => item.webkitGetAsEntry());
  const listed = [];
  const walk = async entry => {
    if (entry.isDirectory) {
      listed.push({path: entry.fullPath, kind: 'folder'});
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child);
      }
    } else {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      const magic = await file.slice(128, 132).text();
      listed.push({path: entry.fullPath, kind: 'file', size: file.size, magic});
    }
  };
  Promise.all(entries.map(walk)).then(
    () => { listed.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)); found.textContent = JSON.stringify(listed, null, 1); },
    error => { found.textContent = 'error: ' + error; });
});
</script>
</body></html>
"""


def test_chromium_gives_a_real_folder_drop(browser_page: BrowserPage, sample_tree: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "drop.html").write_text(DROP_PAGE)
    page = browser_page.page
    with serve_folder(site) as base:
        page.goto(base + "drop.html")
        browser_page.shot("drop-zone")
        drop_folder(page, ".dicomnb-test-drop", sample_tree)
        page.wait_for_function("document.getElementById('found').textContent.startsWith('[')", timeout=10_000)
        browser_page.shot("dropped")
        listed = json.loads(page.inner_text("#found"))

    expected = [{"path": f"/{sample_tree.name}", "kind": "folder"}]
    for path in sorted(sample_tree.rglob("*")):
        name = "/" + path.relative_to(sample_tree.parent).as_posix()
        if path.is_dir():
            expected.append({"path": name, "kind": "folder"})
        else:
            magic = path.read_bytes()[128:132].decode("latin-1")
            expected.append({"path": name, "kind": "file", "size": path.stat().st_size, "magic": magic})
    expected.sort(key=lambda entry: entry["path"])
    assert listed == expected  # the whole tree, each file read by the page itself
    assert sum(entry.get("magic") == "DICM" for entry in listed) == 3  # CT, MR, RT plan; raw.bin has no preamble
    assert not browser_page.external_requests


SMOKE_CELLS = [
    'import ipywidgets as w; b = w.Button(description="Hello"); b.add_class("dicomnb-smoke"); b',
    """import dicomnb
label = w.Label("not clicked"); label.add_class("dicomnb-smoke-label")
cache = w.Label(str(dicomnb.settings.cache_dir)); cache.add_class("dicomnb-smoke-cache")
clicks = []

def clicked(button):
    clicks.append(button)
    label.value = f"clicked {len(clicks)}"

b.on_click(clicked)
w.VBox([label, cache])""",
]


def test_widgets_render_and_call_back(browser_page: BrowserPage, jupyter_lab: LabServer, lab_kernel: str,
                                      isolated_cache: Path) -> None:
    from playwright.sync_api import expect

    write_notebook(jupyter_lab.root / "smoke.ipynb", SMOKE_CELLS, kernel=lab_kernel)
    notebook = open_notebook(browser_page, jupyter_lab, "smoke.ipynb")
    browser_page.shot("opened")

    notebook.run_cell(0, keys="Shift+Enter")
    expect(notebook.wait_for(".dicomnb-smoke")).to_have_text("Hello")
    browser_page.shot("first-cell-ran")

    notebook.run_all()  # the Run menu: a new button, the label, the callback
    assert notebook.prompts() == ["[2]:", "[3]:"]
    button = notebook.wait_for(".dicomnb-smoke")
    label = notebook.wait_for(".dicomnb-smoke-label")
    expect(label).to_have_text("not clicked")
    # the kernel runs with this test's cache, not the server's nor the user's
    expect(notebook.wait_for(".dicomnb-smoke-cache")).to_have_text(str(isolated_cache))
    browser_page.shot("all-ran")

    button.click()
    expect(label).to_have_text("clicked 1")
    button.click()
    expect(label).to_have_text("clicked 2")
    browser_page.shot("clicked-twice")
    assert not notebook.stderr()
    assert not browser_page.console_errors
    assert not browser_page.external_requests

