"""The drop zone: files and whole folders dragged from the desktop, landed in a staging folder.

:class:`DropZone` is an `anywidget <https://anywidget.dev>`_ (its JavaScript is the string
:data:`DROP_ZONE_ESM`, no build step). ipywidgets' ``FileUpload`` has neither drag and drop
nor folders; the zone has both, and keeps "choose files" and "choose folder" buttons for
those who do not drag. The browser walks a dropped folder itself (``webkitGetAsEntry()``
in the drop handler, then ``readEntries()`` until a folder has no more entries) and sends
the kernel one custom message per file, a large file in pieces of :data:`CHUNK_BYTES`, so
no message comes near the 10 MiB a Jupyter server accepts.

The messages (``content`` is JSON; a file's bytes travel as the message's binary buffer)::

    browser -> kernel
      {"kind": "begin", "drop": "<id>", "items": [{"name": "CT", "folder": true}],
       "count": 120, "bytes": 63504000}
      {"kind": "file", "drop": "<id>", "path": "CT/sub/IM0001", "size": 529200,
       "offset": 0, "index": 0, "count": 120}                 + one buffer: bytes [offset, offset + n)
      {"kind": "end", "drop": "<id>", "count": 120}
      {"kind": "abort", "drop": "<id>", "message": "NotReadableError: ..."}
    kernel -> browser
      {"kind": "progress", "drop": "<id>", "received": 3, "count": 120, "bytes": 1587600}
      {"kind": "failed", "drop": "<id>", "message": "the name '../x' climbs out of ..."}

``items`` are the names dropped at the top level (what the core's drop rules look at: one
folder, files, or anything else); ``path`` is a file's path relative to the drop, its first
component one of ``items``. A file's pieces come in order (``offset`` is where a piece
starts); ``progress`` answers every piece, and the browser keeps at most
:data:`WINDOW_BYTES` unanswered, so a large drop never piles up in the browser's memory.
The ``status`` trait is the line the zone shows under its buttons.

Where the files land: ``<cache_dir>/dropped/<time>-<random>/``, one folder per drop, each
name made safe (:func:`~dicomnb.core.store.safe_relative_path`; ``..``, absolute names and
NUL bytes are refused with :class:`~dicomnb.core.errors.UnsafePathError`), each file
written under a temporary name and renamed once complete. An imported drop's files are kept:
the catalog refers to them by path and reads pixels from them later; delete a folder under
``<cache_dir>/dropped`` when its instances are no longer needed. A drop that is refused,
interrupted or not accepted by the drop rules is removed at once, and so is one still
arriving when the zone is closed.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicomnb.core.deps import import_optional_dependency
from dicomnb.core.downloads import human_size
from dicomnb.core.drop import ACCEPTED, check_drop_shape, import_drop
from dicomnb.core.errors import DicomnbError, DropRejected, InputError, UnsafePathError
from dicomnb.core.report import ImportReport
from dicomnb.core.store import atomic_writer, cache_folder, relative_parts, safe_relative_path
from dicomnb.widgets.common import plural

if TYPE_CHECKING:
    import anywidget
    import traitlets
else:
    anywidget = import_optional_dependency("anywidget", "notebook")
    traitlets = import_optional_dependency("traitlets", "notebook")

__all__ = ["CHUNK_BYTES", "DROP_ZONE_CSS", "DROP_ZONE_ESM", "WINDOW_BYTES", "DropZone", "StagedDrop",
           "import_staged"]

LOGGER = logging.getLogger(__name__)

#: Bytes of a file sent in one message (a Jupyter server refuses messages over 10 MiB).
CHUNK_BYTES = 4 * 1024 * 1024
#: Bytes the browser sends ahead of the kernel's ``progress`` answers.
WINDOW_BYTES = 4 * CHUNK_BYTES

DROP_ZONE_ESM = f"""
const CHUNK = {CHUNK_BYTES};
const WINDOW = {WINDOW_BYTES};
""" + """
// readEntries() answers a folder in batches (at most 100 entries in Chrome): ask until empty.
function readAll(reader) {
  return new Promise((resolve, reject) => {
    const all = [];
    const next = () => reader.readEntries((batch) => {
      if (batch.length === 0) resolve(all);
      else { all.push(...batch); next(); }
    }, reject);
    next();
  });
}

async function walk(entry, prefix, out) {
  const path = prefix + entry.name;
  if (entry.isFile) {
    out.push({ path, file: await new Promise((resolve, reject) => entry.file(resolve, reject)) });
  } else if (entry.isDirectory) {
    for (const child of await readAll(entry.createReader())) await walk(child, path + "/", out);
  }
}

function element(tag, className, text) {
  const made = document.createElement(tag);
  if (className) made.className = className;
  if (text) made.textContent = text;
  return made;
}

function newDropId() {
  return globalThis.crypto && crypto.randomUUID ? crypto.randomUUID()
    : Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
}

function plural(count, one) { return count + " " + one + (count === 1 ? "" : "s"); }

function render({ model, el }) {
  const zone = element("div", "dicomnb-drop-zone");
  const title = element("div", "dicomnb-drop-title", "Drop DICOM files or a folder here");
  const hint = element("div", "dicomnb-drop-hint", model.get("hint"));
  const filesInput = element("input", "dicomnb-drop-files-input");
  filesInput.type = "file";
  filesInput.multiple = true;
  const folderInput = element("input", "dicomnb-drop-folder-input");
  folderInput.type = "file";
  folderInput.webkitdirectory = true;
  const chooseFiles = element("button", "dicomnb-drop-choose-files", "choose files");
  const chooseFolder = element("button", "dicomnb-drop-choose-folder", "choose folder");
  for (const choose of [chooseFiles, chooseFolder]) choose.type = "button";
  const buttons = element("div", "dicomnb-drop-buttons");
  buttons.append(chooseFiles, chooseFolder, filesInput, folderInput);
  const status = element("div", "dicomnb-drop-status", model.get("status"));
  zone.append(title, hint, buttons, status);
  el.append(zone);

  let queue = Promise.resolve();
  let current = null;   // the drop being sent: {drop, acked, failed}
  let waiting = [];

  function onMessage(msg) {
    if (!current || !msg || msg.drop !== current.drop) return;
    if (msg.kind === "progress") {
      current.acked = msg.bytes;
      status.textContent = "Received " + msg.received + " of " + plural(msg.count, "file") + "…";
    } else if (msg.kind === "failed") {
      current.failed = msg.message;
      status.textContent = msg.message;
    }
    const wake = waiting;
    waiting = [];
    for (const resume of wake) resume();
  }
  const onStatus = () => { status.textContent = model.get("status"); };
  model.on("msg:custom", onMessage);
  model.on("change:status", onStatus);

  async function room(sent) {
    while (!current.failed && sent - current.acked > WINDOW) {
      await new Promise((resume) => waiting.push(resume));
    }
  }

  async function send(items, files) {
    const drop = newDropId();
    const count = files.length;
    const bytes = files.reduce((sum, f) => sum + f.file.size, 0);
    current = { drop, acked: 0, failed: null };
    status.textContent = "Sending " + plural(count, 'file') + "…";
    model.send({ kind: "begin", drop, items, count, bytes });
    let sent = 0;
    try {
      for (let index = 0; index < count; index++) {
        const { path, file } = files[index];
        let offset = 0;
        do {
          await room(sent);
          if (current.failed) return;
          const end = Math.min(offset + CHUNK, file.size);
          const buffer = await file.slice(offset, end).arrayBuffer();
          model.send({ kind: "file", drop, path, size: file.size, offset, index, count }, undefined, [buffer]);
          sent += buffer.byteLength;
          offset = end;
        } while (offset < file.size);
      }
      model.send({ kind: "end", drop, count });
    } catch (error) {
      model.send({ kind: "abort", drop, message: String(error) });
    }
  }

  // Drops are sent one after the other; `collect` lists a drop's items and files.
  function enqueue(collect) {
    queue = queue.then(async () => {
      let dropped;
      try {
        dropped = await collect();
      } catch (error) {
        status.textContent = "The drop could not be read: " + error;
        return;
      }
      await send(dropped.items, dropped.files);
    });
  }

  const over = (event) => {
    event.preventDefault();
    event.stopPropagation();
    if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
    zone.classList.add("dicomnb-drop-over");
  };
  zone.addEventListener("dragenter", over);
  zone.addEventListener("dragover", over);
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget)) zone.classList.remove("dicomnb-drop-over");
  });
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    event.stopPropagation();
    zone.classList.remove("dicomnb-drop-over");
    // The entries must be taken now: the DataTransfer is emptied once this handler returns.
    const entries = [];
    const loose = [];
    const transfer = event.dataTransfer;
    if (transfer.items && transfer.items.length) {
      for (let i = 0; i < transfer.items.length; i++) {
        const item = transfer.items[i];
        if (item.kind !== "file") continue;
        const entry = item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
        if (entry) entries.push(entry);
        else {
          const file = item.getAsFile();
          if (file) loose.push(file);
        }
      }
    } else {
      loose.push(...Array.from(transfer.files));
    }
    enqueue(async () => {
      const items = [];
      const files = [];
      for (const entry of entries) {
        items.push({ name: entry.name, folder: entry.isDirectory });
        await walk(entry, "", files);
      }
      for (const file of loose) {
        items.push({ name: file.name, folder: false });
        files.push({ path: file.name, file });
      }
      return { items, files };
    });
  });

  chooseFiles.addEventListener("click", () => filesInput.click());
  chooseFolder.addEventListener("click", () => folderInput.click());
  filesInput.addEventListener("change", () => {
    const chosen = Array.from(filesInput.files);
    filesInput.value = "";
    enqueue(async () => ({
      items: chosen.map((file) => ({ name: file.name, folder: false })),
      files: chosen.map((file) => ({ path: file.name, file })),
    }));
  });
  folderInput.addEventListener("change", () => {
    const files = Array.from(folderInput.files).map((file) => ({ path: file.webkitRelativePath || file.name, file }));
    folderInput.value = "";
    enqueue(async () => {
      const tops = new Map();
      for (const { path } of files) {
        const [top, ...rest] = path.split("/");
        tops.set(top, tops.get(top) || rest.length > 0);
      }
      return { items: Array.from(tops, ([name, folder]) => ({ name, folder })), files };
    });
  });

  return () => {
    model.off("msg:custom", onMessage);
    model.off("change:status", onStatus);
  };
}

export default { render };
"""

DROP_ZONE_CSS = """
.dicomnb-drop-zone {
  border: 2px dashed #90a4ae; border-radius: 6px; padding: 1.2em; margin: 0.3em 0;
  text-align: center; color: #37474f; background: #fafafa;
}
.dicomnb-drop-zone.dicomnb-drop-over { border-color: #1e88e5; background: #e3f2fd; }
.dicomnb-drop-title { font-weight: 600; }
.dicomnb-drop-hint { font-size: 0.85em; color: #607d8b; margin: 0.3em 0 0.8em; }
.dicomnb-drop-buttons button { margin: 0 0.3em; cursor: pointer; }
.dicomnb-drop-buttons input[type="file"] { display: none; }
.dicomnb-drop-status { margin-top: 0.6em; min-height: 1.2em; font-size: 0.9em; }
"""


@dataclass(frozen=True)
class StagedDrop:
    """A drop received in full: where its files landed, and what was dropped.

    Attributes
    ----------
    drop : str
        The browser's ID of the drop.
    folder : Path
        The drop's staging folder (``<cache_dir>/dropped/...``).
    paths : tuple of Path
        The staged top-level items, in the order they were dropped (what the drop rules see).
    names : tuple of str
        The names they had in the browser (the same order).
    count, bytes : int
        Files and bytes received.
    """

    drop: str
    folder: Path
    paths: tuple[Path, ...]
    names: tuple[str, ...]
    count: int
    bytes: int


@dataclass
class _Item:
    """A name dropped at the top level and where it lands."""

    name: str
    folder: bool
    staged: Path
    taken: set[str] = field(default_factory=set)  # safe names used under a folder
    received: bool = False  # a dropped file arrived


@dataclass
class _OpenFile:
    """A file whose pieces are still arriving."""

    path: str
    size: int
    writer: atomic_writer
    written: int = 0


def _field(content: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = content.get(name, default)
    # bool is an int: a count of True is a malformed message, not 1
    if not isinstance(value, kind) or (isinstance(value, int) and (isinstance(value, bool) or value < 0)):
        raise InputError(f"the drop zone sent a malformed message: {name} is {value!r}")
    return value


class _Incoming:
    """One drop under way: checks each message against what ``begin`` announced, lands files."""

    def __init__(self, drop: str, items: Sequence[dict[str, Any]], count: int, size: int) -> None:
        self.drop, self.count, self.bytes = drop, count, size
        self.received = self.written = 0
        self.open: _OpenFile | None = None
        root = cache_folder("dropped")
        free = shutil.disk_usage(root).free
        if size > free:
            raise InputError(f"the drop holds {human_size(size)} and the cache folder {root} has "
                             f"{human_size(free)} free: free some space or set dicomnb.settings.cache_dir")
        self.folder = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=root))
        self.items: list[_Item] = []
        self._by_name: dict[str, _Item] = {}
        try:
            self._add_items(items)
        except BaseException:
            self.discard()
            raise

    def _add_items(self, items: Sequence[dict[str, Any]]) -> None:
        taken: set[str] = set()
        for item in items:
            if not isinstance(item, dict):
                raise InputError(f"the drop zone sent a malformed 'begin' message: item {item!r}")
            name = _field(item, "name", str)
            if len(relative_parts(name)) != 1:
                raise UnsafePathError(f"the dropped name {name!r} is not one file or folder name: refused")
            staged = self.folder / safe_relative_path(name, taken)
            made = _Item(name, bool(item.get("folder")), staged)
            if made.folder:
                staged.mkdir()  # an empty folder is still what was dropped
            self.items.append(made)
            self._by_name.setdefault(name, made)

    def target(self, path: str) -> Path:
        """Where the file dropped as ``path`` lands; :class:`UnsafePathError` for unsafe names."""
        parts = relative_parts(path)
        item = self._by_name.get(parts[0])
        if item is None:
            raise InputError(f"the file {path!r} is not inside anything that was dropped")
        if not item.folder:
            if len(parts) != 1 or item.received:
                raise InputError(f"the file {path!r} arrived twice or inside a dropped file")
            item.received = True
            return item.staged
        if len(parts) == 1:
            raise InputError(f"{path!r} was dropped as a folder and arrived as a file")
        return item.staged / safe_relative_path("/".join(parts[1:]), item.taken)

    def write(self, content: dict[str, Any], buffers: Sequence[Any]) -> None:
        """Write one piece of a file (a ``file`` message)."""
        path = _field(content, "path", str)
        size = _field(content, "size", int)
        offset = _field(content, "offset", int, 0)
        pieces = [memoryview(buffer) for buffer in buffers]
        length = sum(piece.nbytes for piece in pieces)
        if offset == 0:
            if self.open is not None:
                raise InputError(f"{self.open.path!r} stopped after {self.open.written} of its "
                                 f"{self.open.size} bytes: drop it again")
            if self.received >= self.count:
                raise InputError(f"more files arrived than the {self.count} announced: drop again")
            self.open = _OpenFile(path, size, atomic_writer(self.target(path)))
        elif self.open is None or self.open.path != path or self.open.written != offset:
            raise InputError(f"a piece of {path!r} arrived out of order (at byte {offset}): drop it again")
        current = self.open
        if current.written + length > current.size or self.written + length > self.bytes:
            raise InputError(f"{path!r} sent more bytes than its size ({current.size}): drop it again")
        for piece in pieces:
            current.writer.file.write(piece)
        current.written += length
        self.written += length
        if current.written == current.size:
            current.writer.__exit__(None, None, None)  # renames the complete file into place
            self.open = None
            self.received += 1

    def finish(self, count: int) -> StagedDrop:
        """Check that everything announced arrived (an ``end`` message)."""
        if self.open is not None or count != self.count or self.received != self.count:
            raise InputError(f"the drop ended with {self.count - self.received} of its {self.count} "
                             "files missing: drop it again")
        return StagedDrop(self.drop, self.folder, tuple(item.staged for item in self.items),
                          tuple(item.name for item in self.items), self.received, self.written)

    def discard(self) -> None:
        """Remove everything this drop landed."""
        if self.open is not None:
            self.open.writer.__exit__(InputError, None, None)  # unlinks the partial file
            self.open = None
        shutil.rmtree(self.folder, ignore_errors=True)


class DropZone(anywidget.AnyWidget):
    """A drop zone for files and whole folders, with "choose files" / "choose folder" buttons.

    Each drop is landed in its own staging folder (see the module docstring), then handed
    to ``on_drop``; a drop that cannot be landed is removed and its error handed to
    ``on_error``. The browser's messages go through :meth:`receive`, which a script or a
    test can call with the same messages.

    CSS classes: ``dicomnb-drop-zone`` (``dicomnb-drop-over`` while something is dragged
    over it), ``dicomnb-drop-choose-files``, ``dicomnb-drop-choose-folder``,
    ``dicomnb-drop-status``.

    Parameters
    ----------
    on_drop : callable, optional
        Called with each :class:`StagedDrop` received in full.
    on_error : callable, optional
        Called with the :class:`~dicomnb.core.errors.DicomnbError` that ended a drop.

    Attributes
    ----------
    status : str
        The line shown under the buttons (the browser also writes its progress there).
    hint : str
        What the zone accepts: the drop rules' message.
    last : StagedDrop or None
        The last drop received in full.
    """

    _esm = DROP_ZONE_ESM
    _css = DROP_ZONE_CSS
    status = traitlets.Unicode("").tag(sync=True)
    hint = traitlets.Unicode(ACCEPTED).tag(sync=True)

    def __init__(self, on_drop: Callable[[StagedDrop], object] | None = None,
                 on_error: Callable[[DicomnbError], object] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_drop = on_drop
        self.on_error = on_error
        self.last: StagedDrop | None = None
        self._drops: dict[str, _Incoming] = {}
        self._ended: set[str] = set()  # drops that failed or ended: their late messages are dropped
        self.on_msg(self._on_custom_message)

    def _on_custom_message(self, widget: object, content: object, buffers: Sequence[Any]) -> None:
        if isinstance(content, dict):
            self.receive(content, buffers)

    def receive(self, content: dict[str, Any], buffers: Sequence[Any] = ()) -> StagedDrop | None:
        """Handle one message from the browser; return the drop when this message ended it.

        Parameters
        ----------
        content : dict
            The message (see the module docstring for the protocol).
        buffers : sequence of bytes-like
            Its binary buffers (a ``file`` message's bytes).
        """
        drop = content.get("drop")
        if not isinstance(drop, str):
            LOGGER.warning("a drop zone message without a drop ID was ignored: %r", content.get("kind"))
            return None
        if drop in self._ended:
            return None
        try:
            return self._receive(drop, content, buffers)
        except DicomnbError as exc:
            self._fail(drop, exc)
        except Exception as exc:  # noqa: BLE001 - a bug must not leave a half-landed drop behind
            LOGGER.exception("the drop %s failed", drop)
            self._fail(drop, InputError(f"the drop failed unexpectedly: {type(exc).__name__}: {exc}"))
        return None

    def _receive(self, drop: str, content: dict[str, Any], buffers: Sequence[Any]) -> StagedDrop | None:
        kind = content.get("kind")
        if kind == "begin":
            if drop in self._drops:
                raise InputError(f"the drop {drop!r} began twice")
            items = _field(content, "items", list)
            count = _field(content, "count", int)
            # the rules that need only the names: refused before a single byte is sent
            check_drop_shape([(str(item.get("name")), bool(item.get("folder")))
                              for item in items if isinstance(item, dict)])
            self._drops[drop] = _Incoming(drop, items, count, _field(content, "bytes", int))
            self.status = f"Receiving {plural(count, 'file')}…"
            return None
        incoming = self._drops.get(drop)
        if incoming is None:
            raise InputError(f"a {kind!r} message came for a drop that did not begin")
        if kind == "file":
            try:
                incoming.write(content, buffers)
            except OSError as exc:
                raise InputError(f"the dropped files cannot be written to {incoming.folder}: "
                                 f"{exc.strerror or exc}") from exc
            self.send({"kind": "progress", "drop": drop, "received": incoming.received,
                       "count": incoming.count, "bytes": incoming.written})
            return None
        if kind == "end":
            staged = incoming.finish(_field(content, "count", int))
            del self._drops[drop]
            self._ended.add(drop)
            self.last = staged
            self.status = f"Received {plural(staged.count, 'file')} ({human_size(staged.bytes)})."
            if self.on_drop is not None:
                self.on_drop(staged)
            return staged
        if kind == "abort":
            message = content.get("message")
            raise InputError(f"the browser could not read the drop ({message}): drop it again")
        raise InputError(f"the drop zone sent a message of unknown kind {kind!r}")

    def close(self) -> None:
        """Close the zone; the drops still arriving are removed (no message will finish them)."""
        drops, self._drops = getattr(self, "_drops", {}), {}
        for incoming in drops.values():
            incoming.discard()
        super().close()

    def _fail(self, drop: str, exc: DicomnbError) -> None:
        incoming = self._drops.pop(drop, None)
        if incoming is not None:
            incoming.discard()
        self._ended.add(drop)
        message = f"The drop was refused: {exc}"
        self.status = message
        self.send({"kind": "failed", "drop": drop, "message": message})
        if self.on_error is not None:
            self.on_error(exc)


def import_staged(staged: StagedDrop, **watch: Any) -> ImportReport:
    """Apply the drop rules to a staged drop and import it (:func:`~dicomnb.core.drop.import_drop`).

    A drop the rules refuse is removed from the staging folder; its
    :class:`~dicomnb.core.errors.DropRejected` names what was dropped as the browser named it
    (not the staging folder). ``watch``: ``progress`` and ``cancel`` of :func:`~dicomnb.import_local`.
    """
    try:
        return import_drop(list(staged.paths), **watch)
    except DropRejected as exc:
        shutil.rmtree(staged.folder, ignore_errors=True)
        message = str(exc)
        for path, name in zip(staged.paths, staged.names, strict=True):
            message = message.replace(os.path.abspath(path), name)
        raise DropRejected(message) from exc
