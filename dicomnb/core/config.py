"""Where dicomnb keeps its configuration (nodes, presets), and how those JSON files are read.

The folder is ``platformdirs.user_config_dir("dicomnb")``, or ``$DICOMNB_CONFIG_DIR`` when
set. Files are written atomically; a file that is not valid JSON is reported with its path
rather than silently replaced, so nothing the user configured is lost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dicomnb.core.errors import ConfigError
from dicomnb.core.store import atomic_write

__all__ = ["config_dir", "read_json_object", "write_json_object"]


def config_dir() -> Path:
    """The folder of dicomnb's configuration files (not created here)."""
    override = os.environ.get("DICOMNB_CONFIG_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_dir("dicomnb", appauthor=False))


def read_json_object(path: Path) -> dict[str, Any] | None:
    """Return the JSON object stored in ``path``, or None when the file does not exist.

    Raises
    ------
    ConfigError
        The file cannot be read or does not hold a JSON object; the message names the file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration file {path}: {exc.strerror or exc}") from exc
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            f"the configuration file {path} is not valid JSON ({exc}): fix it or delete it"
        ) from exc
    if not isinstance(value, dict):
        raise ConfigError(f"the configuration file {path} does not hold a JSON object: fix it or delete it")
    return value


def write_json_object(path: Path, value: dict[str, Any]) -> None:
    """Write ``value`` to ``path`` as indented UTF-8 JSON, atomically."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    try:
        atomic_write(path, text.encode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot write the configuration file {path}: {exc.strerror or exc}") from exc
