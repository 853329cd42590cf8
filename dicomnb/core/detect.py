"""What a file is, by its content and never by its name.

``sniff`` looks at the first bytes of a file: a DICOM file with its 128-byte preamble and
``DICM`` marker, a ZIP archive, a standard image (PNG, JPEG, TIFF, BMP, GIF), or unknown
(which may still be DICOM written without preamble and meta information: the header
scanner decides). ``attachment_kind`` names the kind of a non-DICOM file on media for the
attachments table; it is only a label, so the extension is good enough there.
"""

from __future__ import annotations

import enum
import os
import struct

__all__ = ["HEAD_SIZE", "Kind", "attachment_kind", "sniff"]

#: How many bytes ``sniff`` needs.
HEAD_SIZE = 132


class Kind(enum.Enum):
    """What the first bytes of a file say it is."""

    DICOM = "dicom"
    ZIP = "zip"
    PNG = "png"
    JPEG = "jpeg"
    TIFF = "tiff"
    BMP = "bmp"
    GIF = "gif"
    UNKNOWN = "unknown"

    @property
    def is_image(self) -> bool:
        """True for the standard image formats."""
        return self in _IMAGES


_IMAGES = frozenset({Kind.PNG, Kind.JPEG, Kind.TIFF, Kind.BMP, Kind.GIF})
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})


def sniff(head: bytes) -> Kind:
    """Return the kind of a file from its first :data:`HEAD_SIZE` bytes (fewer if it is shorter)."""
    if head[128:132] == b"DICM":
        return Kind.DICOM
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return Kind.ZIP
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return Kind.PNG
    if head[:3] == b"\xff\xd8\xff":
        return Kind.JPEG
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return Kind.TIFF
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return Kind.GIF
    if head[:2] == b"BM" and len(head) >= 18:
        # "BM" alone is too weak: the DIB header size that follows must be a known one.
        (dib_size,) = struct.unpack_from("<I", head, 14)
        if dib_size in _BMP_HEADER_SIZES:
            return Kind.BMP
    return Kind.UNKNOWN


_ATTACHMENT_KINDS = {
    "spreadsheet": {".xls", ".xlsx", ".xlsm", ".ods", ".csv", ".tsv"},
    "pdf": {".pdf"},
    "3d-model": {".obj", ".fbx", ".stl", ".ply", ".3mf", ".gltf", ".glb", ".dae", ".mtl"},
    "image": {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp"},
    "document": {".doc", ".docx", ".odt", ".rtf", ".txt", ".htm", ".html", ".xml", ".json", ".md"},
    "video": {".mp4", ".avi", ".mov", ".mpg", ".mpeg", ".mkv", ".wmv"},
    "audio": {".wav", ".mp3", ".ogg", ".flac"},
    "archive": {".zip", ".7z", ".rar", ".gz", ".tar"},
    "program": {".exe", ".dll", ".inf", ".ini", ".bat", ".sh", ".jar", ".app", ".msi"},
}
_KIND_BY_EXTENSION = {ext: kind for kind, exts in _ATTACHMENT_KINDS.items() for ext in exts}


def attachment_kind(name: str) -> str:
    """Return a label for a non-DICOM file on media (``"spreadsheet"``, ``"pdf"``, ...)."""
    return _KIND_BY_EXTENSION.get(os.path.splitext(name)[1].lower(), "other")
