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
    │   ├── DecoderMissing         pixel data needs a decoder that is not installed
    │   ├── NotAVolume             images that are not one 3D grid (one image, mixed orientations)
    │   ├── ConfigError            a node, preset or config file that cannot be used
    │   ├── CriteriaError          search criteria that cannot be sent (a bad date, from > to)
    │   ├── ManifestError          a Weasis manifest (XML or JSON) that cannot be read
    │   └── CommandError           a Weasis command or weasis:// URI that cannot be parsed
    ├── SourceError                a remote source failed (network issues)
    │   ├── ConnectionFailed       no association: refused, unreachable, timed out, TLS refused
    │   ├── AssociationRejected    the peer rejected the association (result, source, reason)
    │   ├── AssociationAborted     the peer aborted the association or closed the connection
    │   ├── QueryFailed            a request answered with a failure status (``status``)
    │   │   └── AuthenticationFailed   HTTP 401/403: credentials missing or refused
    │   ├── MalformedResponse      an answer that breaks the standard (a multipart body cut short)
    │   ├── DemoFailed             the demo archive could not start (``stderr``: what it said)
    │   └── RetrieveIncomplete     some instances did not arrive (``missing``)
    ├── DownloadError              the download manager failed
    └── DependencyMissing          an optional dependency is not installed (also an ImportError)

Errors are raised with ``raise ... from exc`` at the boundary where a third-party
exception is caught, so the original cause stays visible.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArchiveError",
    "AssociationAborted",
    "AssociationRejected",
    "AuthenticationFailed",
    "CommandError",
    "ConfigError",
    "ConnectionFailed",
    "CriteriaError",
    "DecoderMissing",
    "DemoFailed",
    "DependencyMissing",
    "DicomdirError",
    "DicomnbError",
    "DownloadError",
    "DropRejected",
    "InputError",
    "MalformedResponse",
    "ManifestError",
    "NotAVolume",
    "NotDicomError",
    "PasswordError",
    "PasswordRequired",
    "QueryFailed",
    "RetrieveIncomplete",
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


class NotAVolume(InputError):  # noqa: N818 - the house names errors by what happened
    """The images given are not one 3D grid: one image, differing orientations or sizes,
    two images at the same position, colour, or no position at all."""


class ConfigError(InputError):
    """A node, a preset or a configuration file that cannot be used as it is."""


class CriteriaError(InputError):
    """Search criteria that cannot be turned into a query (a bad date, a range backwards)."""


class ManifestError(InputError):
    """A Weasis manifest that cannot be used: not XML or JSON, not gzip or base64 as it claims,
    another root or namespace, an unknown version, or a required attribute missing (baseUrl,
    a UID). The message says where (line or JSON path) and what to fix."""


class CommandError(InputError):
    """A Weasis command (``$dicom:get -l PATH``...) or ``weasis://`` URI that cannot be parsed:
    an unknown command or option, a missing value, unbalanced quotes. The message names the
    supported commands or options."""


class SourceError(DicomnbError):
    """A remote source (PACS, DICOMweb server) failed."""


class ConnectionFailed(SourceError):
    """No association could be set up: refused, unreachable, timed out or TLS refused."""


class AssociationRejected(SourceError):
    """The peer rejected the association request.

    Attributes
    ----------
    result, source, reason : str
        The A-ASSOCIATE-RJ fields in words ("rejected permanent", "service user",
        "called AE title not recognised").
    """

    def __init__(self, message: str, *, result: str = "", source: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.result = result
        self.source = source
        self.reason = reason


class AssociationAborted(SourceError):
    """The peer aborted the association (A-ABORT) or closed the connection mid-way."""


class QueryFailed(SourceError):
    """A request was answered with a failure status.

    Attributes
    ----------
    status : int or None
        The DIMSE status (``0xC000``, ``0xA700``...), None when no response came.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationFailed(QueryFailed):
    """A DICOMweb server refused our credentials (HTTP 401) or our access (HTTP 403).

    The message never contains the secret; ``status`` holds the HTTP status.
    """


class MalformedResponse(SourceError):
    """A server's answer does not follow the standard: a multipart body cut short or without
    its boundary, a JSON search result that is not a list of datasets."""


class DemoFailed(SourceError):
    """The demo archive could not be started (or stopped answering).

    Attributes
    ----------
    stderr : str
        The last lines the archive's process wrote to its standard error.
    """

    def __init__(self, message: str, *, stderr: str = "") -> None:
        super().__init__(message + (f"; it said:\n{stderr}" if stderr else ""))
        self.stderr = stderr


class RetrieveIncomplete(SourceError):
    """A retrieve ended with instances missing.

    Attributes
    ----------
    missing : tuple of str
        SOP Instance UIDs that were asked for and did not arrive.
    result : RetrieveResult or None
        What the retrieve did (the instances that arrived, the errors), when known.
    """

    def __init__(self, message: str, *, missing: tuple[str, ...] = (), result: Any = None) -> None:
        super().__init__(message)
        self.missing = tuple(missing)
        self.result = result


class DownloadError(DicomnbError):
    """The download manager could not complete a job."""


class DependencyMissing(DicomnbError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""
