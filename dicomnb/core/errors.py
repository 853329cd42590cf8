"""The one exception tree of dicomnb.

Every error a user can meet is a :class:`DicomnbError`, so ``except DicomnbError`` is
always enough; the subclasses say what went wrong precisely enough for a dialog to react
(ask for a password, show the missing files, ...)::

    DicomnbError
    ├── InputError                 the user's input cannot be used as it is
    │   ├── NotDicomError          a file that is not DICOM
    │   ├── UnreadableFileError    a file that cannot be opened or parsed
    │   │   └── TruncatedFileError the file ends inside its header
    │   ├── UnsafePathError        a name that would escape its folder (``..``, absolute, symlink)
    │   ├── ArchiveError           a ZIP that cannot be used (corrupt, bomb, overlapping entries)
    │   │   └── PasswordError
    │   │       ├── PasswordRequired   the archive is encrypted and no password was given
    │   │       └── WrongPassword      the password given does not open it
    │   ├── DicomdirError          a DICOMDIR that cannot be read
    │   ├── DropRejected           a drop that is none of the three accepted cases
    │   └── DecoderMissing         pixel data needs a decoder that is not installed
    ├── SourceError                a remote source failed (network issues)
    └── DownloadError              the download manager failed

Errors are raised with ``raise ... from exc`` at the boundary where a third-party
exception is caught, so the original cause stays visible.
"""

from __future__ import annotations

__all__ = [
    "ArchiveError",
    "DecoderMissing",
    "DicomdirError",
    "DicomnbError",
    "DownloadError",
    "DropRejected",
    "InputError",
    "NotDicomError",
    "PasswordError",
    "PasswordRequired",
    "SourceError",
    "TruncatedFileError",
    "UnreadableFileError",
    "UnsafePathError",
    "WrongPassword",
]


class DicomnbError(Exception):
    """Base class of every error raised by dicomnb."""


class InputError(DicomnbError):
    """The input given (a file, folder, archive or argument) cannot be used as it is."""


class NotDicomError(InputError):
    """A file that was expected to be DICOM is not."""


class UnreadableFileError(InputError):
    """A file cannot be opened or its DICOM header cannot be parsed."""


class TruncatedFileError(UnreadableFileError):
    """A DICOM file ends inside its header: it was cut short (copy or download interrupted)."""


class UnsafePathError(InputError):
    """A path or name that would lead outside the folder it belongs to."""


class ArchiveError(InputError):
    """A ZIP archive that cannot be used: corrupt, unsupported, or refused as unsafe."""


class PasswordError(ArchiveError):
    """The archive is encrypted and could not be opened with the password given."""


class PasswordRequired(PasswordError):
    """The archive is encrypted: call again with ``password=...`` (``--password-file``)."""


class WrongPassword(PasswordError):
    """The password given does not decrypt the archive: ask for it again."""


class DicomdirError(InputError):
    """A DICOMDIR file that cannot be read or walked."""


class DropRejected(InputError):
    """What was dropped is none of the three cases the drop zone accepts."""


class DecoderMissing(InputError):
    """Pixel data is compressed with a transfer syntax no installed decoder handles."""


class SourceError(DicomnbError):
    """A remote source (PACS, DICOMweb server) failed."""


class DownloadError(DicomnbError):
    """The download manager could not complete a job."""
