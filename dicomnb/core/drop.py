"""The drop rules: what the drop zone accepts, decided before anything is imported.

A drop is accepted in exactly three cases:

1. one folder that holds a DICOMDIR (and the DICOM folder it indexes);
2. one DICOM folder (a folder with DICOM files in it, at any depth);
3. one or more selected files.

Anything else (several folders, folders mixed with files, a folder without DICOM,
nothing at all) is refused with a message that names the three cases.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dicomnb.core.errors import DropRejected
from dicomnb.core.report import ImportReport

__all__ = ["DropKind", "DropPlan", "check_drop", "check_drop_shape", "import_drop"]

ACCEPTED = (
    "Drop one of: (1) a folder that holds a DICOMDIR and its DICOM folder, "
    "(2) a DICOM folder, or (3) one or more selected files."
)


class DropKind(enum.Enum):
    """Which of the three accepted cases a drop is."""

    DICOMDIR_FOLDER = "dicomdir-folder"
    DICOM_FOLDER = "dicom-folder"
    FILES = "files"


@dataclass(frozen=True)
class DropPlan:
    """An accepted drop: its case and the paths to import."""

    kind: DropKind
    paths: tuple[str, ...]


def _holds_dicom(folder: str) -> bool:
    from dicomnb.core.classify import classify_file
    from dicomnb.core.model import InstanceRecord
    from dicomnb.sources.local import walk_files

    return any(isinstance(classify_file(path), InstanceRecord) for path in walk_files(folder))


def check_drop_shape(entries: Sequence[tuple[str, bool]]) -> None:
    """Apply the rules that need only what was dropped at the top level: ``(name, is_folder)``.

    A drop zone can check these before any file is sent: nothing dropped, folders mixed with
    files, and several folders are refused with :class:`DropRejected`.
    """
    if not entries:
        raise DropRejected(f"Nothing was dropped. {ACCEPTED}")
    folders = sum(1 for _, is_folder in entries if is_folder)
    files = len(entries) - folders
    if folders and files:
        raise DropRejected(f"Folders and files were dropped together ({folders} folders, "
                           f"{files} files). {ACCEPTED}")
    if folders > 1:
        raise DropRejected(f"{folders} folders were dropped; drop them one at a time. {ACCEPTED}")


def check_drop(dropped: Sequence[str | os.PathLike[str]]) -> DropPlan:
    """Return the plan for a drop of ``dropped`` paths, or raise :class:`DropRejected`."""
    from dicomnb.sources.dicomdir import find_dicomdir

    paths: list[str] = [os.path.abspath(os.fspath(p)) for p in dropped]
    if not paths:
        raise DropRejected(f"Nothing was dropped. {ACCEPTED}")
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise DropRejected(f"{missing[0]} does not exist. {ACCEPTED}")
    check_drop_shape([(p, os.path.isdir(p)) for p in paths])
    folders = [p for p in paths if os.path.isdir(p)]
    files = [p for p in paths if not os.path.isdir(p)]
    if files:
        return DropPlan(DropKind.FILES, tuple(files))
    folder = folders[0]
    if find_dicomdir(folder) is not None:
        return DropPlan(DropKind.DICOMDIR_FOLDER, (folder,))
    if _holds_dicom(folder):
        return DropPlan(DropKind.DICOM_FOLDER, (folder,))
    raise DropRejected(f"{folder} holds no DICOM file and no DICOMDIR. {ACCEPTED}")


def import_drop(paths: Sequence[str | os.PathLike[str]], *, password: str | bytes | None = None,
                **watch: Any) -> ImportReport:
    """Check a drop with :func:`check_drop`, then import it."""
    from dicomnb.api import import_local

    plan = check_drop(paths)
    return import_local(list(plan.paths), password=password, **watch)
