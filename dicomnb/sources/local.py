"""Local files and folders: walk them, recognise DICOM by content, read headers in parallel."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, islice

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
    notes : sequence of ErrorRecord
        Errors met while routing these paths here (a DICOMDIR that could not be read, whose
        folder is then imported as plain files), reported with the rest.
    """

    kind = "local"

    def __init__(self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                 recursive: bool = True, *, kind: str = "local", origin: str | None = None,
                 notes: Sequence[ErrorRecord] = ()) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [os.path.abspath(os.fspath(p)) for p in paths]
        self.recursive = recursive
        self.kind = kind
        self.origin = origin if origin is not None else os.pathsep.join(self.paths)
        self.notes = list(notes)

    def __repr__(self) -> str:
        return f"LocalSource({self.paths!r}, recursive={self.recursive})"

    def items(self) -> Iterator[Item]:
        """Yield one item per file: instance, image, skipped file or error.

        Paths that do not exist come first, as errors; then the files, classified while the
        folders are still being walked (the worker processes start on the first batches).
        """
        yield from self.notes
        found: list[str] = []
        for path in self.paths:
            if os.path.exists(path):
                found.append(path)
            else:
                error = InputError(f"no such file or folder: {path}")
                yield ErrorRecord.from_exception(path, error, source=self.kind, origin=self.origin)
        yield from classify_paths(self._files(found), self.kind, self.origin)

    def _files(self, paths: Sequence[str]) -> Iterator[str]:
        for path in paths:
            if os.path.isdir(path):
                yield from walk_files(path, self.recursive)
            else:
                yield path


def _batches(files: Iterator[str], size: int) -> Iterator[list[str]]:
    while batch := list(islice(files, size)):
        yield batch


def classify_paths(files: Iterable[str], kind: str, origin: str) -> Iterator[Item]:
    """Classify many files, in worker processes when there are enough of them.

    ``files`` may be a generator (a folder being walked): once it has given
    ``settings.parallel_threshold`` paths, batches go to the workers as it gives more.
    """
    files = iter(files)
    first = list(islice(files, settings.parallel_threshold))
    if len(first) < settings.parallel_threshold or settings.workers <= 1:
        for path in chain(first, files):
            yield classify_file(path, kind, origin)
        return
    batches = ((batch, kind, origin) for batch in _batches(chain(first, files), _BATCH))
    for result in map_batches(classify_files, batches):
        yield from result
