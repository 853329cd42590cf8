"""A real browser for the tests: JupyterLab started here, Debian's Chromium driven by Playwright.

What a person does in the import dialog is tested as a person does it: JupyterLab runs a copy
of a notebook in a real kernel, Chromium shows it, Playwright clicks and types, and every step
is saved as a screenshot to look at.

The pieces, each usable alone:

- :func:`run_jupyterlab` starts ``jupyter lab`` on a free loopback port with a random token,
  its own Jupyter folders (config, data, runtime, IPython, lab settings and workspaces) in
  temporary folders, nothing that reaches the network (no news, no update check, no PyPI
  extension manager), and ``DICOMNB_CACHE_DIR``/``DICOMNB_CONFIG_DIR`` of its own; it yields a
  :class:`LabServer` and stops the server's process group by PID, then checks that no process
  it started (its kernels) is left.
- :meth:`LabServer.add_kernel` writes a kernelspec whose kernel gets a test's own environment
  (the ``isolated_cache`` and ``isolated_config`` of conftest.py): one server serves a module,
  each test's kernel uses that test's folders (fixture :func:`lab_kernel`).
- :func:`launch_chromium` starts ``/usr/bin/chromium`` headless (never a browser that Playwright
  downloads); :func:`new_page` opens a page in a fresh context, as a :class:`BrowserPage` with
  :meth:`BrowserPage.shot` for numbered screenshots; :func:`chromium_page` does both at once.
- :func:`write_notebook` writes a notebook into the lab's folder (:func:`copy_notebook` copies
  one); :func:`open_notebook` opens it and waits for its kernel; :class:`LabNotebook` runs
  cells (a click into the cell and Control+Enter or Shift+Enter, or the Run menu's "Run All
  Cells"), waits for them, and finds what their outputs show; :func:`lab_command` runs a
  JupyterLab command by id.
- :func:`drop_paths` / :func:`drop_folder` drop files or a folder from the "desktop" onto an
  element through Chromium's DevTools protocol (``Input.dispatchDragEvent`` with ``files``):
  the browser registers the paths as it does for a real drag from a file manager, so the
  page's ``DataTransferItem.webkitGetAsEntry()`` gives a directory entry that it can walk.
- :func:`press_timed`, :func:`click_timed` and :meth:`LabNotebook.run_cell_until` time, on the
  page's own clock, from a key press or click until a condition holds (:data:`SHOWN`: an
  element is shown; :func:`mark_stale` makes it ignore what an earlier run showed).
- :func:`serve_folder` serves a folder over HTTP on 127.0.0.1 (static test pages).

Screenshots go to ``test-output/screenshots/<test module>/<test name>/NN-step.png`` at the top
of the repository (``$DICOMNB_TEST_OUTPUT/screenshots/...`` when that is set), emptied when the
test starts; ``test-output/`` is ignored by git. A failed test adds ``NN-failed.png`` and, if
the page logged errors, ``console.txt``.

Widgets are found by their ``dicomnb-...`` CSS classes (``widget.add_class("dicomnb-...")``),
never by their position or text alone.

Traffic stays on 127.0.0.1: Chromium resolves no other host name
(``--host-resolver-rules``), and :attr:`BrowserPage.external_requests` lists any request
for another address that a page tried.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from peers import _running, free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

REPOSITORY = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"

#: Chromium's flags: no sandbox (root, containers), no GPU, nothing fetched in the background,
#: /tmp rather than a small /dev/shm, and no host name resolved but the loopback ones.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-sync",
    "--no-first-run",
    "--no-pings",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
)
VIEWPORT = {"width": 1280, "height": 900}

LAB_START_TIMEOUT = 90.0    # seconds for JupyterLab to answer /api/status (2 cores, cold caches)
LAB_STOP_TIMEOUT = 15.0     # seconds after SIGTERM (it shuts its kernels down) before SIGKILL
PAGE_TIMEOUT = 60.0         # seconds for JupyterLab's page to show the notebook
KERNEL_TIMEOUT = 60.0       # seconds for a kernel to start and be idle
RUN_TIMEOUT = 120.0         # seconds for cells to run
OUTPUT_TIMEOUT = 30.0       # seconds for an output to appear once its cell ran

#: The environment variable that marks every process a test starts here (the JupyterLab
#: server and its kernels, Chromium and its children): what is left of them is found by it.
MARKER = "DICOMNB_TEST_PROCESS"


class BrowserTestError(RuntimeError):
    """JupyterLab or Chromium did not start, stop or show what was expected."""


# --- processes ---------------------------------------------------------------------------------

def marked_processes(marker: str) -> list[int]:
    """PIDs of the running processes whose environment holds ``MARKER=marker`` (Linux /proc)."""
    wanted = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()  # empty for a zombie
        except OSError:
            continue
        if wanted in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def process_tree(pids: Iterable[int]) -> set[int]:
    """``pids`` and all their descendants that run now (Linux /proc)."""
    found: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError, ValueError):
                todo += [int(child) for child in (task / "children").read_text().split()]
    return found


def _describe(pids: Iterable[int]) -> str:
    lines = []
    for pid in pids:
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            lines.append(f"  {pid}: {command[:200]}")
    return "\n".join(lines)


def reap(marker: str, seen: Iterable[int], what: str, grace: float = 5.0) -> None:
    """Check that the processes ``seen`` (a snapshot taken while they ran) and those marked
    ``marker`` end within ``grace`` seconds; SIGKILL those left, by PID, and raise
    :class:`BrowserTestError` naming them: they should have ended by themselves.

    The marker alone would miss Chromium's renderers (the zygote starts them with an
    environment of its own), hence the snapshot of the process tree.
    """
    seen = set(seen)

    def left_running() -> list[int]:
        return sorted({pid for pid in seen if _running(pid)} | set(marked_processes(marker)))

    deadline = time.monotonic() + grace
    left = left_running()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = left_running()
    if not left:
        return
    described = _describe(left)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    raise BrowserTestError(f"{what} left {len(left)} process(es) running (now killed):\n{described}")


# --- JupyterLab --------------------------------------------------------------------------------

#: JupyterLab's user settings for the tests: no news nor update check, every cell attached to
#: the page (the default windowing leaves cells out of view out of the DOM), and the
#: notebook's kernel started without asking.
LAB_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
}


@dataclass
class LabServer:
    """A JupyterLab started by :func:`run_jupyterlab`.

    Attributes
    ----------
    url, token, port : str, str, int
        Its base address ``http://127.0.0.1:PORT/``, the random token every request needs, its port.
    root : Path
        The folder it serves (where notebooks are written).
    state : Path
        Its Jupyter folders (``config``, ``data``, ``runtime``, ``ipython``, ``lab-settings``,
        ``lab-workspaces``) and its log ``jupyterlab.log``.
    cache_dir, config_dir : Path
        ``DICOMNB_CACHE_DIR`` and ``DICOMNB_CONFIG_DIR`` of its default kernel (``python3``).
    pid : int
        The server's PID (the leader of its process group).
    marker : str
        The value of :data:`MARKER` in the environment of the server and its kernels.
    """

    url: str
    token: str
    port: int
    root: Path
    state: Path
    cache_dir: Path
    config_dir: Path
    pid: int
    marker: str

    @property
    def log(self) -> Path:
        return self.state / "jupyterlab.log"

    def tail(self, lines: int = 40) -> str:
        """The end of the server's log."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def page_url(self, path: str, workspace: str | None = None) -> str:
        """The address that opens ``path`` (relative to :attr:`root`) in JupyterLab.

        With ``workspace``, in a workspace of that name (a new one is empty: nothing that an
        earlier test left open is restored).
        """
        quoted = urllib.parse.quote(path)
        where = f"lab/workspaces/{urllib.parse.quote(workspace)}/tree/{quoted}" if workspace else f"lab/tree/{quoted}"
        return f"{self.url}{where}?token={self.token}"

    def api(self, path: str, method: str = "GET") -> Any:
        """Call the server's REST API (``path`` below ``/api/``); return the decoded JSON, or None."""
        request = urllib.request.Request(f"{self.url}api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def running_kernels(self) -> list[dict[str, Any]]:
        """The kernels the server runs (``/api/kernels``)."""
        return list(self.api("kernels"))

    def add_kernel(self, name: str, env: Mapping[str, str], display_name: str | None = None) -> str:
        """Write a kernelspec ``name``: this Python's ipykernel with ``env`` added to its environment.

        A notebook written with ``kernel=name`` (:func:`write_notebook`) runs in such a kernel.
        A page opened afterwards lists it (the page reads the kernelspecs when it loads).
        Returns ``name``.
        """
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            raise ValueError(f"a kernel name is letters, digits, '.', '_' and '-': {name!r}")
        folder = self.state / "data" / "kernels" / name
        folder.mkdir(parents=True, exist_ok=True)
        spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": display_name or name, "language": "python", "env": dict(env),
                "metadata": {"debugger": False}}
        (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
        return name


def _status_ok(port: int, token: str) -> bool:
    with contextlib.suppress(OSError, ValueError):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2) as response:
            return response.status == 200 and "started" in json.loads(response.read())
    return False


@contextlib.contextmanager
def run_jupyterlab(folder: Path, state: Path | None = None,
                   env: Mapping[str, str] | None = None) -> Iterator[LabServer]:
    """Start JupyterLab serving ``folder``; yield a :class:`LabServer`; stop it and its kernels.

    Parameters
    ----------
    folder : Path
        The folder it serves (created if missing): write or copy the notebooks there.
    state : Path, optional
        Where its Jupyter folders and log go (an empty folder); a temporary folder, removed
        at the end, when not given.
    env : Mapping[str, str], optional
        More environment for the server and its kernels (after the isolation below).

    The server runs ``python -m jupyter lab`` from this interpreter on a free loopback port
    with a random token, in a new session (its own process group), with ``--allow-root``
    when run as root. JUPYTER_CONFIG_DIR, JUPYTER_DATA_DIR, JUPYTER_RUNTIME_DIR, IPYTHONDIR,
    JUPYTERLAB_SETTINGS_DIR and JUPYTERLAB_WORKSPACES_DIR point into ``state``; DICOMNB_CACHE_DIR
    and DICOMNB_CONFIG_DIR too (the user's are never touched). Its kernels inherit all that.

    At the end the process group gets SIGTERM (the server shuts its kernels down), then
    SIGKILL after :data:`LAB_STOP_TIMEOUT`; a process of its own left after that is killed and
    reported (:class:`BrowserTestError`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if state is None:
            state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dicomnb-lab-")))
        state = Path(state)
        dirs = {name: state / name for name in ("config", "data", "runtime", "ipython", "lab-settings",
                                                "lab-workspaces", "dicomnb-cache", "dicomnb-config")}
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        for plugin, values in LAB_SETTINGS.items():
            settings_file = dirs["lab-settings"] / f"{plugin}.jupyterlab-settings"
            settings_file.parent.mkdir(parents=True, exist_ok=True)
            settings_file.write_text(json.dumps(values))
        token, marker, port = secrets.token_hex(24), secrets.token_hex(8), free_port()
        server_env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(dirs["config"]),
            "JUPYTER_DATA_DIR": str(dirs["data"]),
            "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
            "IPYTHONDIR": str(dirs["ipython"]),
            "JUPYTERLAB_SETTINGS_DIR": str(dirs["lab-settings"]),
            "JUPYTERLAB_WORKSPACES_DIR": str(dirs["lab-workspaces"]),
            "DICOMNB_CACHE_DIR": str(dirs["dicomnb-cache"]),
            "DICOMNB_CONFIG_DIR": str(dirs["dicomnb-config"]),
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # quiets debugpy's frozen-modules note in kernels
            "PYTHONUNBUFFERED": "1",
            MARKER: marker,
        }
        server_env.pop("JUPYTER_TOKEN", None)
        server_env.update(env or {})
        argv = [
            sys.executable, "-m", "jupyter", "lab", "--no-browser",
            f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0", f"--ServerApp.root_dir={folder}",
            # nothing that reaches the network: no news feed, no update check, no PyPI listing
            "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            # window.jupyterapp, for lab_command(): JupyterLab's commands by id
            "--LabApp.expose_app_in_browser=True",
        ]
        if os.geteuid() == 0:
            argv.append("--allow-root")
        log = open(state / "jupyterlab.log", "wb")  # noqa: SIM115 - closed below
        stack.callback(log.close)
        process = subprocess.Popen(argv, cwd=folder, env=server_env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        lab = LabServer(url=f"http://127.0.0.1:{port}/", token=token, port=port, root=folder, state=state,
                        cache_dir=dirs["dicomnb-cache"], config_dir=dirs["dicomnb-config"], pid=process.pid,
                        marker=marker)
        try:
            _wait_for_lab(process, lab)
            yield lab
        finally:
            _stop_lab(process, lab)


def _wait_for_lab(process: subprocess.Popen[bytes], lab: LabServer) -> None:
    deadline = time.monotonic() + LAB_START_TIMEOUT
    while not _status_ok(lab.port, lab.token):
        if process.poll() is not None:
            raise BrowserTestError(f"JupyterLab exited with status {process.returncode} during start-up:\n"
                                   f"{lab.tail()}")
        if time.monotonic() > deadline:
            raise BrowserTestError(f"JupyterLab did not answer within {LAB_START_TIMEOUT:g} s:\n{lab.tail()}")
        time.sleep(0.1)


def _stop_lab(process: subprocess.Popen[bytes], lab: LabServer) -> None:
    seen = process_tree([process.pid])
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(LAB_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(LAB_STOP_TIMEOUT)
    # the kernels run in sessions of their own: the server shuts them down; check it did
    reap(lab.marker, seen - {process.pid}, "JupyterLab")


# --- Chromium ----------------------------------------------------------------------------------

@contextlib.contextmanager
def launch_chromium(executable: str = CHROMIUM) -> Iterator[Browser]:
    """Start Debian's Chromium headless under Playwright; yield the Playwright ``Browser``.

    At the end the browser is closed, Playwright stops, and a Chromium process left behind
    is killed and reported (:class:`BrowserTestError`).
    """
    from playwright.sync_api import sync_playwright

    marker = secrets.token_hex(8)
    # Debian's Chromium keeps crash reports under ~/.config even with a temporary profile
    with tempfile.TemporaryDirectory(prefix="dicomnb-chromium-", ignore_cleanup_errors=True) as home:
        env = {**os.environ, "XDG_CONFIG_HOME": f"{home}/config", "XDG_CACHE_HOME": f"{home}/cache", MARKER: marker}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                                 args=list(CHROMIUM_ARGS), env=env)
            try:
                yield browser
            finally:
                seen = process_tree(marked_processes(marker))
                browser.close()
        reap(marker, seen, "Chromium")


def screenshot_dir(node: pytest.Item) -> Path:
    """Where the screenshots of the test ``node`` go: ``test-output/screenshots/<module>/<test>/``."""
    base = Path(os.environ.get("DICOMNB_TEST_OUTPUT") or REPOSITORY / "test-output")
    module = Path(str(node.fspath)).stem
    test = re.sub(r"[^A-Za-z0-9._-]+", "_", node.name).strip("_")
    return base / "screenshots" / module / test


@dataclass
class BrowserPage:
    """A Playwright page with numbered screenshots and a record of what went wrong in it.

    Attributes
    ----------
    page : playwright.sync_api.Page
        The page itself.
    output_dir : Path
        Where :meth:`shot` saves.
    console_errors : list[str]
        Errors the page logged or threw (``console.error``, uncaught exceptions).
    external_requests : list[str]
        Requests for any address but 127.0.0.1 / localhost that the page tried.
    """

    page: Page
    output_dir: Path
    console_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    shots: list[Path] = field(default_factory=list)

    def shot(self, name: str, full_page: bool = False) -> Path:
        """Save a screenshot of the page as ``NN-name.png`` (NN counts from 01); return its path."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "step"
        path = self.output_dir / f"{len(self.shots) + 1:02d}-{slug}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        self.shots.append(path)
        return path

    def write_console(self) -> Path | None:
        """Write :attr:`console_errors` to ``console.txt`` beside the screenshots (if any)."""
        if not self.console_errors:
            return None
        path = self.output_dir / "console.txt"
        path.write_text("\n".join(self.console_errors) + "\n")
        return path


def _local(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return not url.startswith(("http:", "https:", "ws:", "wss:")) or host in {"127.0.0.1", "localhost", "::1"}


@contextlib.contextmanager
def new_page(browser: Browser, output_dir: Path) -> Iterator[BrowserPage]:
    """A page in a fresh browser context (no cookies, no storage), saving screenshots to ``output_dir``.

    ``output_dir`` is emptied first. The context is closed at the end.
    """
    output_dir = Path(output_dir)
    shutil.rmtree(output_dir, ignore_errors=True)
    output_dir.mkdir(parents=True)
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, accept_downloads=False)
    context.set_default_timeout(PAGE_TIMEOUT * 1000)
    try:
        page = context.new_page()
        shown = BrowserPage(page=page, output_dir=output_dir)
        page.on("console", lambda message: message.type == "error"
                and shown.console_errors.append(f"console.error: {message.text}"))
        page.on("pageerror", lambda error: shown.console_errors.append(f"uncaught: {error}"))
        page.on("request", lambda request: _local(request.url) or shown.external_requests.append(request.url))
        yield shown
    finally:
        context.close()


@contextlib.contextmanager
def chromium_page(output_dir: Path) -> Iterator[BrowserPage]:
    """Chromium started for one page (:func:`launch_chromium` and :func:`new_page` at once)."""
    with launch_chromium() as browser, new_page(browser, output_dir) as page:
        yield page


# --- drag and drop from the desktop --------------------------------------------------------------

def drop_paths(page: Page, target: str | Locator, paths: Sequence[Path]) -> None:
    """Drop ``paths`` (files or folders of this machine) onto the centre of ``target``.

    ``target`` is a selector (its first match) or a locator, scrolled into view first. The
    drop goes through Chromium's DevTools protocol (``Input.dispatchDragEvent``: dragEnter,
    dragOver, drop, with ``data.files`` = the absolute paths and the copy operation allowed),
    the path a drag from a file manager takes: the browser grants the page read access to
    the paths, and ``webkitGetAsEntry()`` gives a ``FileSystemDirectoryEntry`` for a folder.
    The page's ``dragover`` handler must accept the drop (``preventDefault()``), as for a
    person's drop.
    """
    locator = page.locator(target).first if isinstance(target, str) else target
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    if box is None:
        raise BrowserTestError(f"nothing to drop onto: {target} is not shown")
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    data = {"items": [], "files": [str(Path(p).resolve()) for p in paths], "dragOperationsMask": 1}
    session = page.context.new_cdp_session(page)
    try:
        for kind in ("dragEnter", "dragOver", "drop"):
            session.send("Input.dispatchDragEvent", {"type": kind, "x": x, "y": y, "data": data})
    finally:
        session.detach()


def drop_folder(page: Page, target: str | Locator, folder: Path) -> None:
    """Drop the folder ``folder`` onto ``target``, as a person drags it from a file manager."""
    if not Path(folder).is_dir():
        raise ValueError(f"not a folder: {folder}")
    drop_paths(page, target, [folder])


# --- timing what a page shows ------------------------------------------------------------------
# The clock is the page's own (performance.now()), started in the same turn of the page's event
# loop as the key press or click, and read on the first animation frame at which the condition
# holds: no Playwright round trip falls inside what is timed.

#: A condition for :func:`press_timed`, :func:`click_timed` and :meth:`LabNotebook.run_cell_until`:
#: true once an element matching the selector ``arg`` is shown (laid out, not hidden) and not
#: inside an element marked stale by :func:`mark_stale`.
SHOWN = """selector => [...document.querySelectorAll(selector)].some(e =>
  !e.closest('[data-dicomnb-stale]') && e.getClientRects().length > 0
  && getComputedStyle(e).visibility !== 'hidden')"""


def mark_stale(page: Page, selector: str) -> int:
    """Mark the elements matching ``selector`` now so that :data:`SHOWN` ignores them (and what
    they hold); return how many. For timing a view that replaces one of the same kind."""
    return int(page.evaluate("""selector => { const found = document.querySelectorAll(selector);
      found.forEach(e => e.setAttribute('data-dicomnb-stale', '')); return found.length; }""", selector))


def _seconds_until(page: Page, condition: str, arg: Any, timeout: float) -> float:
    """Wait (checking at every animation frame) until ``condition(arg)`` holds in the page;
    return the seconds since the clock was started there."""
    expression = f"""arg => {{
      if (window.__dicomnbClock === undefined || !(({condition})(arg))) return false;
      return {{seconds: (performance.now() - window.__dicomnbClock) / 1000}};
    }}"""
    handle = page.wait_for_function(expression, arg=arg, polling="raf", timeout=timeout * 1000)
    return float(handle.json_value()["seconds"])


def _clock_on_key(page: Page, keys: str) -> None:
    """Start the page's clock at the next keydown of ``keys``' last key (``Enter`` of ``Control+Enter``)."""
    page.evaluate("""key => {
      window.__dicomnbClock = undefined;
      const listener = event => {
        if (event.key !== key) return;
        window.__dicomnbClock = performance.now();
        document.removeEventListener('keydown', listener, true);
      };
      document.addEventListener('keydown', listener, true);
    }""", keys.split("+")[-1])


def press_timed(page: Page, keys: str, condition: str, arg: Any = None, timeout: float = OUTPUT_TIMEOUT) -> float:
    """Press ``keys`` in the element that has the focus; return the seconds from the key going
    down until ``condition(arg)`` (a JavaScript function's source, such as :data:`SHOWN`) holds."""
    _clock_on_key(page, keys)
    page.keyboard.press(keys)
    return _seconds_until(page, condition, arg, timeout)


def click_timed(target: Locator, condition: str, arg: Any = None, timeout: float = OUTPUT_TIMEOUT) -> float:
    """Click ``target`` (the element's own ``click()``, the clock started just before it); return
    the seconds until ``condition(arg)`` holds. The element is scrolled into view first."""
    target.scroll_into_view_if_needed()
    target.evaluate("element => { window.__dicomnbClock = performance.now(); element.click(); }")
    return _seconds_until(target.page, condition, arg, timeout)


# --- static pages ------------------------------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port) in a thread; yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="static-pages", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- notebooks in JupyterLab -------------------------------------------------------------------

def write_notebook(path: Path, cells: Sequence[str], kernel: str = "python3") -> Path:
    """Write a notebook of code ``cells`` (sources) to ``path``, for the kernelspec ``kernel``.

    Its metadata names the kernel, so that JupyterLab starts it without asking.
    """
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def copy_notebook(source: Path, folder: Path, kernel: str | None = None) -> Path:
    """Copy the notebook ``source`` into ``folder`` (a lab's root); with ``kernel``, for that kernelspec."""
    import nbformat

    target = Path(folder) / Path(source).name
    notebook = nbformat.read(source, as_version=4)
    if kernel is not None:
        notebook.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    nbformat.write(notebook, target)
    return target


#: True once every cell that was asked to run has run: no ``[*]`` prompt left and the kernel idle.
_CELLS_DONE = """panel => {
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
  const status = panel.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status;
  return !prompts.some(p => p.includes('*')) && status === 'idle';
}"""

#: The text of error outputs and stderr streams.
_STDERR = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"


class LabNotebook:
    """A notebook open in JupyterLab (:func:`open_notebook`): run its cells, read its outputs.

    Cells are counted from 0, in the order of the notebook. Selectors given to
    :meth:`wait_for` are looked for inside the notebook's outputs.
    """

    def __init__(self, shown: BrowserPage, panel: Locator, lab: LabServer, path: str) -> None:
        self.shown = shown
        self.page = shown.page
        self.panel = panel
        self.lab = lab
        self.path = path

    @property
    def cells(self) -> Locator:
        return self.panel.locator(".jp-Notebook .jp-Cell")

    def cell(self, index: int) -> Locator:
        return self.cells.nth(index)

    def output(self, index: int) -> Locator:
        """The output area of cell ``index``."""
        return self.cell(index).locator(".jp-OutputArea")

    def prompts(self) -> list[str]:
        """The input prompts of the code cells (``[1]:``, ``[*]:``, ``[ ]:``)."""
        return [text.strip() for text in self.panel.locator(".jp-CodeCell .jp-InputPrompt").all_text_contents()]

    def kernel_status(self) -> str:
        """The kernel's status as the notebook's toolbar shows it (``idle``, ``busy``, ``starting``...)."""
        indicator = self.panel.locator(".jp-Notebook-ExecutionIndicator")
        return (indicator.get_attribute("data-status", timeout=1000) or "") if indicator.count() else ""

    def stderr(self) -> list[str]:
        """The text of the error outputs and stderr streams shown."""
        return self.panel.locator(_STDERR).all_inner_texts()

    def server_kernel_state(self) -> str | None:
        """The state of the notebook's kernel as the server knows it (None: no session yet)."""
        for session in self.lab.api("sessions"):
            if session.get("path") == self.path and session.get("kernel"):
                return str(session["kernel"].get("execution_state"))
        return None

    def wait_for_kernel(self, timeout: float = KERNEL_TIMEOUT) -> None:
        """Wait until the kernel is idle, choosing the default kernel if JupyterLab asks for one.

        Both the server and the page must say so: the page's indicator reads "idle" before
        any kernel is started.
        """
        deadline = time.monotonic() + timeout
        while not (self.server_kernel_state() == "idle" and self.kernel_status() == "idle"):
            accept_kernel_dialog(self.page)
            if time.monotonic() > deadline:
                self.shown.shot("kernel-not-idle")
                raise BrowserTestError(f"the kernel is {self.server_kernel_state()!r} on the server and "
                                       f"{self.kernel_status()!r} on the page after {timeout:g} s, not idle:\n"
                                       f"{self.lab.tail(15)}")
            self.page.wait_for_timeout(100)

    def wait_until_done(self, timeout: float = RUN_TIMEOUT) -> None:
        """Wait until no cell is queued or running and the kernel is idle."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(_CELLS_DONE, arg=self.panel.element_handle(), timeout=timeout * 1000,
                                        polling=100)
        except PlaywrightTimeout:
            self.shown.shot("cells-not-done")
            raise BrowserTestError(f"cells still running after {timeout:g} s: {self.prompts()}") from None

    def _started(self, before: list[str], timeout: float = 10.0) -> None:
        # Running a cell sets its prompt to [*] at once, in the click's own event handler; a
        # cell as fast as the kernel's reply shows its new number instead. Either shows that
        # the run was asked for, so that waiting for the end cannot end before it began.
        deadline = time.monotonic() + timeout
        while True:
            now = self.prompts()
            if now != before or any("*" in p for p in now):
                return
            if time.monotonic() > deadline:
                raise BrowserTestError(f"no cell started running (prompts {now})")
            self.page.wait_for_timeout(50)

    def run_cell(self, index: int, keys: str = "Control+Enter", timeout: float = RUN_TIMEOUT) -> None:
        """Click into cell ``index`` and press ``keys``, as a person does; wait until it ran.

        Control+Enter runs the cell and stays there; Shift+Enter runs it and moves on (and
        adds a new cell after the last one).
        """
        before = self.prompts()
        self.cell(index).locator(".jp-InputArea-editor").click()
        self.page.keyboard.press(keys)
        self._started(before)
        self.wait_until_done(timeout)

    def run_cell_until(self, index: int, condition: str, arg: Any = None, keys: str = "Control+Enter",
                       timeout: float = RUN_TIMEOUT) -> float:
        """Run cell ``index`` as :meth:`run_cell` does; return the seconds from the key press
        until ``condition(arg)`` holds in the page (see :func:`press_timed`), then wait until it ran."""
        before = self.prompts()
        self.cell(index).locator(".jp-InputArea-editor").click()
        seconds = press_timed(self.page, keys, condition, arg, timeout)
        self._started(before)
        self.wait_until_done(timeout)
        return seconds

    def run_all(self, timeout: float = RUN_TIMEOUT) -> None:
        """Run every cell from the Run menu ("Run All Cells"); wait until they ran (or one failed)."""
        before = self.prompts()
        # the notebook must be the current widget for the menu to act on it; a click on a
        # prompt selects a cell and clicks nothing that an output shows
        self.cells.first.locator(".jp-InputPrompt").first.click()
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        self._started(before)
        self.wait_until_done(timeout)

    def wait_for(self, selector: str, timeout: float = OUTPUT_TIMEOUT) -> Locator:
        """Wait for ``selector`` to be shown in an output of the notebook; return its first match.

        On a timeout the error names the errors the cells printed (a failed cell shows no widget).
        """
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        found = self.panel.locator(".jp-OutputArea").locator(selector).first
        try:
            found.wait_for(state="visible", timeout=timeout * 1000)
        except PlaywrightTimeout:
            self.shown.shot("not-shown")
            errors = "\n".join(self.stderr()) or "(no error output)"
            raise BrowserTestError(f"{selector} not shown within {timeout:g} s; prompts {self.prompts()}; "
                                   f"errors:\n{errors}") from None
        return found


def accept_kernel_dialog(page: Page) -> bool:
    """If JupyterLab asks which kernel to start ("Select Kernel"), take its choice; True if it asked."""
    dialog = page.locator(".jp-Dialog", has=page.locator(".jp-Dialog-header", has_text="Select Kernel"))
    if not dialog.count() or not dialog.first.is_visible():
        return False
    dialog.first.locator(".jp-Dialog-button.jp-mod-accept").click()
    return True


def open_notebook(shown: BrowserPage, lab: LabServer, name: str, workspace: str | None = None,
                  timeout: float = PAGE_TIMEOUT) -> LabNotebook:
    """Open the notebook ``name`` (relative to ``lab.root``) in JupyterLab and wait for its kernel.

    It opens in a workspace of its own (``workspace``, by default one named after the
    notebook and a random suffix), so that nothing an earlier page left open is restored.
    """
    workspace = workspace or f"{re.sub(r'[^A-Za-z0-9]+', '-', Path(name).stem)}-{secrets.token_hex(3)}"
    page = shown.page
    page.goto(lab.page_url(name, workspace=workspace), wait_until="domcontentloaded", timeout=timeout * 1000)
    panel = page.locator(".jp-NotebookPanel:visible").first
    try:
        panel.locator(".jp-Notebook .jp-Cell").first.wait_for(state="visible", timeout=timeout * 1000)
    except Exception as exc:
        shown.shot("notebook-not-shown")
        raise BrowserTestError(f"JupyterLab did not show {name} within {timeout:g} s") from exc
    notebook = LabNotebook(shown, panel, lab, name)
    notebook.wait_for_kernel()
    return notebook


def lab_command(page: Page, command: str, args: Mapping[str, Any] | None = None) -> Any:
    """Run a JupyterLab command by id (``notebook:run-all-cells``, ``docmanager:save``...).

    For steps a person would do through a menu that a test need not click through; the
    server exposes the app for this (``--LabApp.expose_app_in_browser``).
    """
    return page.evaluate("([command, args]) => window.jupyterapp.commands.execute(command, args)",
                         [command, dict(args or {})])


# --- pytest fixtures ---------------------------------------------------------------------------
# Import them into a test module by their function names (``from browser import
# browser_page_fixture``...): the test then asks for the fixture by its name (``browser_page``).

@pytest.fixture(scope="module", name="chromium")
def chromium_fixture() -> Iterator[Browser]:
    """Debian's Chromium under Playwright, once per module (missing: skipped here, failed on CI)."""
    from conftest import require_module, require_tool

    require_tool("chromium")
    require_module("playwright", extra="test")
    with launch_chromium() as browser:
        yield browser


@pytest.fixture(scope="module", name="jupyter_lab")
def jupyter_lab_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab serving a temporary folder, once per module."""
    from conftest import require_module

    for module in ("jupyterlab", "ipywidgets", "ipykernel"):
        require_module(module, extra="notebook")
    base = tmp_path_factory.mktemp("jupyterlab")
    with run_jupyterlab(base / "root", state=base / "state") as lab:
        yield lab


@pytest.fixture(name="browser_page")
def browser_page_fixture(chromium: Browser, request: pytest.FixtureRequest) -> Iterator[BrowserPage]:
    """A fresh page of the module's Chromium; its screenshots go to :func:`screenshot_dir`.

    A failed test leaves a last screenshot ``NN-failed.png`` and the page's ``console.txt``.
    """
    failed_before = request.session.testsfailed
    with new_page(chromium, screenshot_dir(request.node)) as shown:
        yield shown
        if request.session.testsfailed > failed_before:
            with contextlib.suppress(Exception):
                shown.shot("failed")
            shown.write_console()


@pytest.fixture(name="lab_kernel")
def lab_kernel_fixture(jupyter_lab: LabServer, isolated_cache: Path, isolated_config: Path,
               request: pytest.FixtureRequest) -> str:
    """A kernelspec for this test: its kernel uses the test's ``isolated_cache`` and ``isolated_config``."""
    name = "dicomnb-test-" + re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:60].lower()
    return jupyter_lab.add_kernel(name, {"DICOMNB_CACHE_DIR": str(isolated_cache),
                                         "DICOMNB_CONFIG_DIR": str(isolated_config)})
