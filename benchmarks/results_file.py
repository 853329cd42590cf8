"""The shared results file: each benchmark script owns one top-level section of ``results.md``."""

from __future__ import annotations

import json
from pathlib import Path


def write_section(path: Path, section: str) -> None:
    """Put ``section`` (starting with its ``# `` heading) in ``path`` in place of its previous
    version, keeping the other scripts' sections."""
    heading = section.split("\n", 1)[0]
    text = path.read_text() if path.exists() else ""
    start = text.find(heading + "\n")
    if start >= 0:
        end = text.find("\n# ", start + len(heading))
        text = text[:start] + section.rstrip("\n") + "\n" + (text[end:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section.rstrip("\n") + "\n"
    path.write_text(text)


def publish(out: Path, json_name: str, results: dict[str, object], section: str) -> None:
    """Write ``results`` to ``out/json_name`` and ``section`` into ``out/results.md``; print the section."""
    out.mkdir(parents=True, exist_ok=True)
    (out / json_name).write_text(json.dumps(results, indent=2) + "\n")
    write_section(out / "results.md", section)
    print("\n" + section)
