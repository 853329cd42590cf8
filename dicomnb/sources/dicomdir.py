"""DICOMDIR media (placeholder until the DICOMDIR source lands)."""

from __future__ import annotations

import os
from pathlib import Path


def find_dicomdir(folder: str | os.PathLike[str]) -> Path | None:
    for entry in os.scandir(folder):
        if entry.name.upper() == "DICOMDIR" and entry.is_file():
            return Path(entry.path)
    return None


def is_dicomdir_file(path: str) -> bool:
    return os.path.basename(path).upper() == "DICOMDIR"


def detect_cdrom(roots=None):  # type: ignore[no-untyped-def]
    raise NotImplementedError


class DicomdirSource:
    def __init__(self, path, copy=False):  # type: ignore[no-untyped-def]
        raise NotImplementedError
