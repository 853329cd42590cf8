"""The dialog's tabs for what is on this machine: **Local**, **ZIP** and **DICOMDIR**.

Each tab gathers a path (typed, or picked with a small file-system browser), its options,
and on **Import** calls one verb of the core off the main thread:
:func:`~dicomnb.import_local`, :func:`~dicomnb.import_zip`, :func:`~dicomnb.import_dicomdir`.
The ZIP tab asks for the password in place when the archive is encrypted, and again, with
the reason, when it is wrong. The DICOMDIR tab finds mounted media ("Detect CD-ROM") and
shows the DICOMDIR's tree after an import, missing files marked, attachments listed.
"""

from __future__ import annotations

import html
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicomnb.core.deps import import_optional_dependency
from dicomnb.core.errors import PasswordRequired, WrongPassword
from dicomnb.core.report import ImportReport
from dicomnb.core.store import atomic_write, cache_folder, key_for, safe_name
from dicomnb.widgets.common import Alert, Tab, Task, Worker, button, plural, show, shown

if TYPE_CHECKING:
    import ipywidgets as widgets
else:
    widgets = import_optional_dependency("ipywidgets", "notebook")

__all__ = ["DicomdirTab", "LocalTab", "PathField", "ZipTab"]

Imported = Callable[[ImportReport, bool], object]
#: Entries a browser lists at most (a folder of 100,000 files stays usable).
BROWSER_ENTRIES = 500
#: The label of the DICOMDIR tab's button that looks for mounted media.
DETECT_LABEL = "Detect CD-ROM"


class PathField(widgets.VBox):
    """A path typed in a text field, or picked with a small browser of the file system.

    ``value`` is the text (for the Local tab, one path per line: files and/or folders).
    **Browse** shows the folder of the current path: pick a folder ending in ``/`` to go
    into it, **Up** for its parent, **Use this folder** to take it, or a file to take it.
    ``multiple`` adds each pick on a new line instead of replacing the text. CSS classes
    ``dicomnb-<name>-path``, ``-browse``, ``-browser``, ``-up``, ``-use-folder``.
    """

    def __init__(self, name: str, placeholder: str, *, multiple: bool = False,
                 suffixes: tuple[str, ...] = ()) -> None:
        self.multiple, self.suffixes = multiple, suffixes
        text_type = widgets.Textarea if multiple else widgets.Text
        self.text = text_type(placeholder=placeholder, layout=widgets.Layout(width="60%"))
        self.text.add_class(f"dicomnb-{name}-path")
        self.browse = widgets.ToggleButton(description="Browse…", value=False, layout=widgets.Layout(width="auto"))
        self.browse.add_class(f"dicomnb-{name}-browse")
        self.folder = Path.cwd()
        self.location = widgets.HTML()
        self.entries = widgets.Select(options=[], rows=10, layout=widgets.Layout(width="60%"))
        self.entries.add_class(f"dicomnb-{name}-browser")
        self.up = button("Up", f"dicomnb-{name}-up", "The parent folder")
        self.use_folder = button("Use this folder", f"dicomnb-{name}-use-folder")
        self.up.on_click(lambda _: self.show_folder(self.folder.parent))
        self.use_folder.on_click(lambda _: self.pick(self.folder))
        self.entries.observe(self._picked, names="value")
        self.browse.observe(lambda change: self._toggle(bool(change["new"])), names="value")
        self.browser = widgets.VBox([self.location, self.entries, widgets.HBox([self.up, self.use_folder])])
        super().__init__([widgets.HBox([self.text, self.browse]), self.browser])
        show(self.browser, False)

    @property
    def value(self) -> str:
        return str(self.text.value)

    @value.setter
    def value(self, text: str) -> None:
        self.text.value = text

    def paths(self) -> list[str]:
        """The paths given (one per line for a multiple field), ``~`` expanded."""
        lines = self.value.splitlines() if self.multiple else [self.value]
        return [os.path.expanduser(line.strip()) for line in lines if line.strip()]

    def _toggle(self, visible: bool) -> None:
        if visible:
            given = self.paths()
            start = Path(given[-1]) if given else Path.cwd()
            self.show_folder(start if start.is_dir() else start.parent if start.parent.is_dir() else Path.cwd())
        show(self.browser, visible)

    def show_folder(self, folder: Path) -> None:
        """List ``folder`` in the browser (folders first, then the files it may take)."""
        try:
            with os.scandir(folder) as scan:
                found = sorted(scan, key=lambda e: (not e.is_dir(), e.name.lower()))
        except OSError as exc:
            # the folder listed (and taken by "Use this folder") stays the one before: say both
            self.location.value = (f"<b>{html.escape(str(self.folder))}</b> ({html.escape(str(folder))} cannot be "
                                   f"read: {html.escape(exc.strerror or str(exc))})")
            return
        self.folder = folder
        options = [(entry.name + "/", entry.path) for entry in found if entry.is_dir()]
        options += [(entry.name, entry.path) for entry in found
                    if not entry.is_dir() and (not self.suffixes or entry.name.lower().endswith(self.suffixes))]
        more = len(options) - BROWSER_ENTRIES
        self.location.value = (f"<b>{html.escape(str(folder))}</b>"
                               + (f" (the first {BROWSER_ENTRIES}; {more} more: type the path)" if more > 0 else ""))
        self.entries.unobserve(self._picked, names="value")
        self.entries.options = options[:BROWSER_ENTRIES]
        self.entries.value = None
        self.entries.observe(self._picked, names="value")

    def _picked(self, change: dict[str, Any]) -> None:
        chosen = change["new"]
        if not chosen:
            return
        if os.path.isdir(chosen):
            self.show_folder(Path(chosen))
        else:
            self.pick(Path(chosen))

    def pick(self, path: Path) -> None:
        """Take ``path`` (added on a new line for a multiple field)."""
        if self.multiple and self.value.strip():
            if str(path) not in self.paths():
                self.value = self.value.rstrip("\n") + "\n" + str(path)
        else:
            self.value = str(path)


def _checkbox(description: str, css: str, value: bool) -> widgets.Checkbox:
    box = widgets.Checkbox(description=description, value=value, indent=False, layout=widgets.Layout(width="auto"))
    box.add_class(css)
    return box


class LocalTab(Tab):
    """**Local**: files and/or folders, "Search recursively", "Open after import"."""

    title = "Local"

    def __init__(self, *, alert: Alert, imported: Imported | None = None) -> None:
        self.path = PathField("local", "Files and/or folders, one per line", multiple=True)
        self.recursive = _checkbox("Search recursively", "dicomnb-local-recursive", True)
        self.open_after = _checkbox("Open after import", "dicomnb-local-open", False)
        self.import_button = button("Import", "dicomnb-local-import", "Import these files and folders",
                                    button_style="primary")
        self.import_button.on_click(lambda _: self.import_())
        super().__init__([self.path, widgets.HBox([self.recursive, self.open_after]), self.import_button],
                         alert=alert, imported=imported, css="dicomnb-local")

    def import_(self) -> None:
        """Import the paths given (off the main thread); the dialog shows the report."""
        paths = self.path.paths()
        if not paths:
            self.alert.show("Give a file or a folder to import (type it, or Browse…).", "warning")
            return
        recursive, open_after = self.recursive.value, self.open_after.value
        self.alert.clear()

        def work(cancel: threading.Event) -> ImportReport:
            from dicomnb.api import get

            return get(paths, recursive=recursive, progress=self.progress, cancel=cancel)

        self.run("Import", work, lambda report: self.imported(report, open_after))


class ZipTab(Tab):
    """**ZIP**: a DICOM ZIP chosen by path or uploaded; asks for the password when encrypted."""

    title = "ZIP"

    def __init__(self, *, alert: Alert, imported: Imported | None = None) -> None:
        self.path = PathField("zip", "A .zip file", suffixes=(".zip",))
        self.upload = widgets.FileUpload(accept=".zip", multiple=False, description="Upload a zip")
        self.upload.add_class("dicomnb-zip-upload")
        self.open_after = _checkbox("Open after import", "dicomnb-zip-open", False)
        self.copy = _checkbox("Copy the images into the cache", "dicomnb-zip-copy", False)
        self.reason = widgets.HTML()
        self.reason.add_class("dicomnb-zip-password-reason")
        self.password = widgets.Password(placeholder="Password", layout=widgets.Layout(width="16em"))
        self.password.add_class("dicomnb-zip-password")
        self.unlock = button("Open", "dicomnb-zip-unlock", "Open the archive with this password")
        self.unlock.on_click(lambda _: self.import_())
        self.prompt = widgets.VBox([self.reason, widgets.HBox([self.password, self.unlock])])
        self.prompt.add_class("dicomnb-zip-prompt")
        self.import_button = button("Import", "dicomnb-zip-import", "Import this archive", button_style="primary")
        self.import_button.on_click(lambda _: self.import_())
        self.upload.observe(lambda change: self._uploaded(), names="value")
        # the prompt is about the archive it names: another archive has not asked for a password
        self.path.text.observe(lambda change: self._hide_prompt(), names="value")
        super().__init__([self.path, self.upload, widgets.HBox([self.copy, self.open_after]), self.prompt,
                          self.import_button], alert=alert, imported=imported, css="dicomnb-zip")
        show(self.prompt, False)

    def _uploaded(self) -> None:
        """Keep an uploaded archive in the cache (named by its content) and take its path."""
        files = list(self.upload.value or ())
        if not files:
            return
        upload = files[0]
        content = bytes(upload["content"])
        target = cache_folder("uploads") / f"{key_for('upload', content)[:16]}-{safe_name(upload['name'], 'upload.zip')}"
        if not target.exists():
            atomic_write(target, content)
        self.path.value = str(target)
        self.upload.value = ()

    def ask_password(self, reason: str) -> None:
        """Show the password prompt with ``reason`` ("encrypted", "wrong password")."""
        self.reason.value = f"<b>{html.escape(reason)}</b>"
        show(self.prompt, True)
        self.password.value = ""

    def _hide_prompt(self) -> None:
        show(self.prompt, False)
        self.password.value = ""

    def import_(self) -> None:
        """Import the archive (with the password typed, once asked for)."""
        path = self.path.value.strip()
        if not path:
            self.alert.show("Choose a .zip file (type its path, Browse…, or upload it).", "warning")
            return
        password = self.password.value if shown(self.prompt) else None
        copy, open_after = self.copy.value, self.open_after.value
        self.alert.clear()

        def work(cancel: threading.Event) -> ImportReport | str:
            """The import's report, or why a password is asked for."""
            from dicomnb.api import import_zip

            try:
                return import_zip(os.path.expanduser(path), password=password or None, copy=copy,
                                  progress=self.progress, cancel=cancel)
            except PasswordRequired:
                return f"{os.path.basename(path)} is encrypted: enter its password."
            except WrongPassword:
                return f"The password does not open {os.path.basename(path)}: try again."

        # the prompt changes only in ``done``, which an import replaced by a newer one never reaches
        def done(outcome: ImportReport | str) -> None:
            if isinstance(outcome, str):
                self.ask_password(outcome)
                return
            self._hide_prompt()
            self.imported(outcome, open_after)

        self.run("Import", work, done)


class DicomdirTab(Tab):
    """**DICOMDIR**: a DICOMDIR or its media folder, "Detect CD-ROM", "Copy images into a local
    temporary folder"; after an import, the DICOMDIR's tree (missing files marked) and the
    attachments."""

    title = "DICOMDIR"

    def __init__(self, *, alert: Alert, imported: Imported | None = None) -> None:
        self.path = PathField("dicomdir", "A DICOMDIR, or the folder (CD/DVD) that holds it")
        self.detect = button(DETECT_LABEL, "dicomnb-dicomdir-detect", "Find mounted media with a DICOMDIR")
        self.detect.on_click(lambda _: self.detect_in_background())
        # a worker of its own: looking for media does not stop an import under way
        self.detector = Worker(alert)
        self.media = widgets.Dropdown(options=[], description="Media")
        self.media.add_class("dicomnb-dicomdir-media")
        self.media.observe(self._media_chosen, names="value")
        self.copy = _checkbox("Copy images into a local temporary folder", "dicomnb-dicomdir-copy", False)
        self.open_after = _checkbox("Open after import", "dicomnb-dicomdir-open", False)
        self.import_button = button("Import", "dicomnb-dicomdir-import", "Import the media", button_style="primary")
        self.import_button.on_click(lambda _: self.import_())
        self.tree = widgets.HTML()
        self.tree.add_class("dicomnb-dicomdir-tree")
        super().__init__([widgets.HBox([self.path, self.detect]), self.media,
                          widgets.HBox([self.copy, self.open_after]), self.import_button, self.tree],
                         alert=alert, imported=imported, css="dicomnb-dicomdir")
        show(self.media, False)

    def _media_chosen(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.path.value = change["new"]

    def detect_in_background(self, roots: list[str] | None = None) -> Task[list[Path]]:
        """:meth:`detect_media` off the main thread (a CD can take seconds to spin up and answer),
        the button disabled meanwhile (what **Detect CD-ROM** does)."""
        self.detect.disabled, self.detect.description = True, "Detecting…"

        def work(cancel: threading.Event) -> list[Path]:
            try:
                return self.detect_media(roots)
            finally:
                self.detect.disabled, self.detect.description = False, DETECT_LABEL

        return self.detector.run("Detect CD-ROM", work)

    def detect_media(self, roots: list[str] | None = None) -> list[Path]:
        """Look for mounted media with a DICOMDIR; the first found becomes the path."""
        from dicomnb.sources.dicomdir import detect_cdrom

        found = detect_cdrom(roots)
        self.media.options = [(str(p), str(p)) for p in found]
        show(self.media, len(found) > 1)
        if found:
            self.path.value = str(found[0])
            self.alert.show(f"Found {plural(len(found), 'medium', 'media')} with a DICOMDIR: {found[0]}", "info")
        else:
            self.alert.show("No CD/DVD or mounted medium with a DICOMDIR was found: give the path.", "warning")
        return found

    def import_(self) -> None:
        """Import the media (off the main thread); then show its tree."""
        path = self.path.value.strip()
        if not path:
            self.alert.show("Give a DICOMDIR or the folder that holds it (or Detect CD-ROM).", "warning")
            return
        copy, open_after = self.copy.value, self.open_after.value
        self.alert.clear()
        self.tree.value = ""  # the tree shown is the last import's: not this one's, should it fail

        def work(cancel: threading.Event) -> ImportReport:
            from dicomnb.api import import_dicomdir

            return import_dicomdir(os.path.expanduser(path), copy=copy, progress=self.progress, cancel=cancel)

        def done(report: ImportReport) -> None:
            self.tree.value = tree_html(report)
            self.imported(report, open_after)

        self.run("Import", work, done)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the import and the media detection under way (False on timeout)."""
        return self.worker.wait(timeout) and self.detector.wait(timeout)


#: DICOMDIR tree statuses and how the tree marks them.
_STATUS_MARKS = {"ok": "", "missing": "✗ missing", "unreadable": "✗ unreadable", "unsafe": "✗ unsafe",
                 "other instance": "✗ another instance"}


def tree_html(report: ImportReport) -> str:
    """The DICOMDIR's PATIENT/STUDY/SERIES/IMAGE records as nested lists, missing files marked."""
    tree = report.tree
    if tree is None or len(tree) == 0:
        return "<i>The DICOMDIR references no file.</i>"
    parts = ["<div style='max-height:20em;overflow:auto'>"]
    for patient, by_patient in tree.groupby(tree["PatientID"].fillna(""), sort=False):
        name = by_patient["PatientName"].dropna().iloc[0] if by_patient["PatientName"].notna().any() else ""
        parts.append(f"<details open><summary>Patient {html.escape(str(name or patient) or '(no ID)')}</summary><ul>")
        for study, by_study in by_patient.groupby(by_patient["StudyInstanceUID"].fillna(""), sort=False):
            label = by_study["StudyDescription"].dropna().iloc[0] if by_study["StudyDescription"].notna().any() else study
            parts.append(f"<li><details><summary>Study {html.escape(str(label))}</summary><ul>")
            for series, by_series in by_study.groupby(by_study["SeriesInstanceUID"].fillna(""), sort=False):
                bad = by_series[by_series["status"] != "ok"]
                mark = (f" <span class='dicomnb-dicomdir-missing' style='color:#b71c1c'>{len(bad)} missing</span>"
                        if len(bad) else "")
                modality = by_series["Modality"].dropna().iloc[0] if by_series["Modality"].notna().any() else ""
                parts.append(f"<li>Series {html.escape(str(modality))} {html.escape(str(series)[-16:])}: "
                             f"{len(by_series)} files{mark}<ul>")
                parts += [f"<li class='dicomnb-dicomdir-missing' style='color:#b71c1c'>"
                          f"{html.escape(str(row.ReferencedFileID))}: {_STATUS_MARKS.get(row.status, row.status)}</li>"
                          for row in bad.itertuples()]
                parts.append("</ul></li>")
            parts.append("</ul></details></li>")
        parts.append("</ul></details>")
    if report.attachments:
        parts.append(f"<details><summary>{len(report.attachments)} attachments</summary><ul>")
        parts += [f"<li class='dicomnb-dicomdir-attachment'>{html.escape(a.path)}</li>" for a in report.attachments]
        parts.append("</ul></details>")
    parts.append("</div>")
    return "".join(parts)

