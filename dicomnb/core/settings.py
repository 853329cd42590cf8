"""One validated settings object, with a context manager to change values for a block.

>>> from dicomnb import settings
>>> with settings.override(workers=1):
...     pass
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings", "settings"]

MiB = 1024 * 1024
GiB = 1024 * MiB


def _default_cache_dir() -> Path:
    override = os.environ.get("DICOMNB_CACHE_DIR")
    if override:
        return Path(override)
    try:
        import platformdirs
    except ImportError:  # pragma: no cover - platformdirs is a dependency
        return Path.home() / ".cache" / "dicomnb"
    return Path(platformdirs.user_cache_dir("dicomnb", appauthor=False))


@dataclass
class Settings:
    """Tunable limits and places. Change them with :meth:`override` or by assignment.

    Attributes
    ----------
    cache_dir : Path
        Where archive entries and copied media land (``DICOMNB_CACHE_DIR`` overrides it).
    workers : int
        Processes used to read headers of large batches (1 disables the pool).
    parallel_threshold : int
        Smallest batch that is worth sending to the worker processes.
    zip_max_total_bytes : int
        Largest total uncompressed size accepted from one archive.
    zip_max_ratio : float
        Largest compression ratio accepted for an entry (or the archive) above
        ``zip_ratio_min_bytes``; a higher ratio is a zip bomb.
    zip_ratio_min_bytes : int
        Entries smaller than this are not ratio-checked (they cannot fill a disk).
    zip_max_entries : int
        Largest number of entries accepted in one archive.
    """

    cache_dir: Path = dataclasses.field(default_factory=_default_cache_dir)
    workers: int = dataclasses.field(default_factory=lambda: max(1, os.cpu_count() or 1))
    parallel_threshold: int = 400
    zip_max_total_bytes: int = 32 * GiB
    zip_max_ratio: float = 200.0
    zip_ratio_min_bytes: int = 1 * MiB
    zip_max_entries: int = 1_000_000

    def __setattr__(self, name: str, value: object) -> None:
        if name not in {f.name for f in dataclasses.fields(Settings)}:
            raise AttributeError(f"dicomnb settings have no option {name!r}")
        if name == "cache_dir":
            value = Path(value)  # type: ignore[arg-type]
        elif name in {"workers", "parallel_threshold", "zip_max_entries"}:
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"settings.{name} must be a whole number >= 1, not {value!r}")
        elif name in {"zip_max_total_bytes", "zip_ratio_min_bytes", "zip_max_ratio"}:
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"settings.{name} must be a positive number, not {value!r}")
        object.__setattr__(self, name, value)

    @contextlib.contextmanager
    def override(self, **values: object) -> Iterator[Settings]:
        """Change some settings for the duration of a ``with`` block."""
        old = {name: getattr(self, name) for name in values}
        try:
            for name, value in values.items():
                setattr(self, name, value)
            yield self
        finally:
            for name, value in old.items():
                object.__setattr__(self, name, value)


settings = Settings()
