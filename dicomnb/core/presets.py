"""Saved search criteria ("presets"), kept in ``presets.json`` beside ``nodes.json``.

Two presets are built in and can be neither deleted nor replaced: "Empty" (no criteria)
and "Today" (the period today). A preset with a period keeps the period by name, so it is
recomputed each time it is used; one with explicit dates keeps the dates. The preset last
chosen is remembered and is :meth:`Presets.current` in the next session::

    {"version": 1, "last_chosen": "CT last week",
     "presets": {"CT last week": {"modalities": ["CT"], "period": "last-week", ...}}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dicomnb.core.config import config_dir, read_json_object, write_json_object
from dicomnb.core.criteria import Period, SearchCriteria
from dicomnb.core.errors import ConfigError, DicomnbError

__all__ = ["BUILT_IN", "EMPTY", "TODAY", "Presets"]

PRESETS_FILE = "presets.json"
FORMAT_VERSION = 1
EMPTY = "Empty"
TODAY = "Today"

#: The presets every user has; they cannot be deleted or replaced.
BUILT_IN: dict[str, SearchCriteria] = {
    EMPTY: SearchCriteria(),
    TODAY: SearchCriteria(period=Period.TODAY),
}


class Presets:
    """Named search criteria, saved at once (atomically) to their file.

    Parameters
    ----------
    path : Path
        The JSON file (``config_dir() / "presets.json"`` by :meth:`load`).
    saved : dict of str to SearchCriteria
        The user's presets (built-ins excluded).
    last_chosen : str
        The name of the preset chosen last.
    """

    def __init__(self, path: Path, saved: dict[str, SearchCriteria] | None = None,
                 last_chosen: str = EMPTY) -> None:
        self.path = Path(path)
        self._saved = dict(saved or {})
        self.last_chosen = last_chosen if last_chosen in self else EMPTY

    @classmethod
    def load(cls, path: Path | None = None) -> Presets:
        """Read the presets from ``path`` (default: ``presets.json`` in the config folder).

        Raises
        ------
        ConfigError
            The file is corrupt; the message names it.
        """
        path = Path(path) if path is not None else config_dir() / PRESETS_FILE
        data = read_json_object(path)
        if data is None:
            return cls(path)
        try:
            raw = data.get("presets", {})
            if not isinstance(raw, dict):
                raise ConfigError("'presets' is not a JSON object")
            saved = {str(name): SearchCriteria.from_json(value) for name, value in raw.items()
                     if name not in BUILT_IN}
            last = data.get("last_chosen", EMPTY)
        except (DicomnbError, TypeError) as exc:
            raise ConfigError(f"the presets file {path} is not usable: {exc}: fix it or delete it") from exc
        return cls(path, saved, last if isinstance(last, str) else EMPTY)

    def _write(self) -> None:
        presets: dict[str, Any] = {name: criteria.to_json() for name, criteria in self._saved.items()}
        write_json_object(self.path, {"version": FORMAT_VERSION, "last_chosen": self.last_chosen,
                                      "presets": presets})

    def __contains__(self, name: object) -> bool:
        return name in BUILT_IN or name in self._saved

    def names(self) -> list[str]:
        """Built-in presets first, then the user's in the order they were saved."""
        return [*BUILT_IN, *self._saved]

    def get(self, name: str) -> SearchCriteria:
        """The criteria saved as ``name``.

        Raises
        ------
        ConfigError
            No such preset; the message lists the known ones.
        """
        if name in BUILT_IN:
            return BUILT_IN[name]
        try:
            return self._saved[name]
        except KeyError:
            raise ConfigError(f"no preset named {name!r} (presets: {', '.join(self.names())})") from None

    def save(self, name: str, criteria: SearchCriteria) -> None:
        """Save ``criteria`` as ``name`` (replacing a preset of the user's of that name)."""
        name = name.strip() if isinstance(name, str) else ""
        if not name:
            raise ConfigError("a preset needs a name")
        if name in BUILT_IN:
            raise ConfigError(f"{name!r} is a built-in preset and cannot be replaced: choose another name")
        if not isinstance(criteria, SearchCriteria):
            raise ConfigError(f"a preset holds SearchCriteria, not {type(criteria).__name__}")
        self._saved[name] = criteria
        self._write()

    def delete(self, name: str) -> None:
        """Delete the user's preset ``name``; built-in presets cannot be deleted."""
        if name in BUILT_IN:
            raise ConfigError(f"{name!r} is a built-in preset and cannot be deleted")
        if name not in self._saved:
            raise ConfigError(f"no preset named {name!r} (presets: {', '.join(self.names())})")
        del self._saved[name]
        if self.last_chosen == name:
            self.last_chosen = EMPTY
        self._write()

    def choose(self, name: str) -> SearchCriteria:
        """Make ``name`` the current preset (remembered across sessions) and return it."""
        criteria = self.get(name)
        self.last_chosen = name
        self._write()
        return criteria

    def current(self) -> SearchCriteria:
        """The criteria of the preset chosen last ("Empty" at first)."""
        return self.get(self.last_chosen)
