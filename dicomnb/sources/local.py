"""Local files and folders: walk them, recognise DICOM by content, read headers in parallel."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence

from dicomnb.core.classify import classify_file, classify_files
from dicomnb.core.errors import InputError
from dicomnb.core.model import ErrorRecord, Item
from dicomnb.core.parallel import map_batches
from dicomnb.core.settings import settings

__all__ = ["LocalSource", "walk_files"]

LOGGER = logging.getLogger(__name__)
_BATCH = 256


def walk_files(folder: str | os.PathLike[str], recursive: bool = True) -> Iterator[str]:
    """Yield the paths of the regular files in ``folder`` (and below it when ``recursive``).

    Symbolic links to folders are not followed (no loops); links to files are.
    Unreadable sub-folders are skipped with a log message.
    """
    stack = [os.fspath(folder)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                subfolders = []
                for entry in entries:
                    try:
                        if entry.is_file():
                            yield entry.path
                        elif recursive and entry.is_dir(follow_symlinks=False):
                            subfolders.append(entry.path)
                    except OSError:  # pragma: no cover - entry vanished while walking
                        continue
        except OSError as exc:
            LOGGER.warning("cannot list %s: %s", current, exc)
            continue
        stack.extend(sorted(subfolders, reverse=True))


class LocalSource:
    """Files and folders on a local disk.

    Parameters
    ----------
    paths : path or sequence of paths
        Files and/or folders.
    recursive : bool
        Search folders recursively (the default) or only their top level.
    """

    kind = "local"

    def __init__(self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                 recursive: bool = True, *, kind: str = "local", origin: str | None = None) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [os.path.abspath(os.fspath(p)) for p in paths]
        self.recursive = recursive
        self.kind = kind
        self.origin = origin if origin is not None else os.pathsep.join(self.paths)

    def __repr__(self) -> str:
        return f"LocalSource({self.paths!r}, recursive={self.recursive})"

    def _files(self) -> Iterator[str | ErrorRecord]:
        for path in self.paths:
            if os.path.isdir(path):
                yield from walk_files(path, self.recursive)
            elif os.path.exists(path):
                yield path
            else:
                error = InputError(f"no such file or folder: {path}")
                yield ErrorRecord.from_exception(path, error, source=self.kind, origin=self.origin)

    def items(self) -> Iterator[Item]:
        """Yield one item per file: instance, image, skipped file or error."""
        files: list[str] = []
        for entry in self._files():
            if isinstance(entry, ErrorRecord):
                yield entry
            else:
                files.append(entry)
        yield from classify_paths(files, self.kind, self.origin)


def classify_paths(files: Sequence[str], kind: str, origin: str) -> Iterable[Item]:
    """Classify many files, in worker processes when there are enough of them."""
    if len(files) < settings.parallel_threshold or settings.workers <= 1:
        for path in files:
            yield classify_file(path, kind, origin)
        return
    batches = ((files[i : i + _BATCH], kind, origin) for i in range(0, len(files), _BATCH))
    for result in map_batches(classify_files, batches):
        yield from result
