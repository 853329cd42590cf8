"""The Weasis command protocol: ``weasis://`` URIs and ``$dicom:get``-style commands, parsed.

A link or script written for the Weasis viewer works here: :func:`parse_uri` decodes a
``weasis://`` URI and :func:`parse_commands` reads commands typed as text; both return typed,
frozen command objects and run nothing (the executor is the caller).

The commands and options are Weasis's own (``DicomModel.get/rs/close`` in weasis-dicom-explorer,
``image:get`` in weasis-base-explorer), parsed the way Weasis's ``Options`` parser does:

* ``-l VALUE``, ``-lVALUE``, ``--local VALUE``, ``--local=VALUE``; a long option may be shortened
  to an unambiguous prefix (``--loc``); flags may be grouped (``-ap``); the word after an option
  that takes a value is always that value, even if it starts with ``-``; ``--`` ends the options.
* ``$dicom:get`` ``-l PATH``, ``-r URI``, ``-w URI``, ``-z URI``, ``-i DATA`` (each repeatable) and
  ``-p``; ``$dicom:rs -u URL -r QUERY`` with ``-H``/``--header``, ``--query-header``,
  ``--retrieve-header``, ``--query-ext``, ``--retrieve-ext``, ``--accept-ext`` and
  ``--show-whole-study``; ``$dicom:close -a | -p ID | -y UID | -s UID``; ``$image:get -f FILE |
  -u URL``; ``-?``/``--help`` on each gives a :class:`CommandHelp`.
* ``$weasis:config`` (the launcher's own settings: codebase, properties) is recognised and kept as
  a :class:`WeasisConfig` for the executor to skip: dicomnb has no launcher to configure.

How a ``weasis://`` URI is read (``ConfigData.extractArgFromUri`` in weasis-launcher): the whole
URI is URL-decoded as Java's ``URLDecoder`` does (``+`` is a space), then split on every ``$``;
what precedes the first ``$`` (``weasis://``, ``weasis://?``, ``weasis:///?``) is dropped, and each
piece is one command. A ``$`` inside a value must therefore not appear in a URI, even encoded.
On Windows, browsers append a ``/`` to the URI: Weasis drops it from the last command there.

Quoting within a command follows a POSIX shell, so ``-l "My scans"`` and ``-l 'My scans'`` are one
path, with one exception for Windows paths: outside quotes a backslash escapes only a space, a
quote or another backslash, so ``-l C:\\scans\\ct`` stays as typed.

Differences from Weasis, all making an error visible instead of silently doing nothing: an unknown
command, an unknown option, a bare argument (``$dicom:get /path`` needs ``-l``), a command with
none of its required options, and an unknown ``dicom:rs`` query key raise :class:`CommandError`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote_plus

from dicomnb.core.errors import CommandError

__all__ = [
    "PORTABLE_FOLDERS",
    "RS_QUERY_KEYS",
    "SUPPORTED_COMMANDS",
    "Command",
    "CommandHelp",
    "DicomClose",
    "DicomGet",
    "DicomRs",
    "ImageGet",
    "PortableSources",
    "RsRequest",
    "WeasisConfig",
    "parse_command",
    "parse_commands",
    "parse_uri",
    "weasis_portable_folders",
]

_URI = re.compile(r"^weasis(?:-[^:/]*)?://", re.IGNORECASE)
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_COMMAND_NAME = re.compile(r"^[A-Za-z][\w-]*:[A-Za-z][\w-]*$")

#: The folders ``$dicom:get -p`` reads, as Weasis's default ``weasis.portable.dicom.directory``.
PORTABLE_FOLDERS = ("dicom", "DICOM", "IMAGES", "images")

#: The query keys of ``$dicom:rs -r`` (Weasis's ``InvokeImageDisplay``: the IHE Invoke Image
#: Display parameters, plus ``seriesUID`` and ``objectUID``).
RS_QUERY_KEYS = (
    "patientID", "studyUID", "accessionNumber", "seriesUID", "objectUID",
    "requestType", "patientName", "patientBirthDate", "lowerDateTime", "upperDateTime",
    "mostRecentResults", "modalitiesInStudy", "viewerType", "diagnosticQuality", "keyImagesOnly",
    "containsInDescription",
)
_RS_ID_KEYS = ("patientID", "studyUID", "accessionNumber", "seriesUID", "objectUID")


# --- the commands ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DicomGet:
    """``$dicom:get``: import DICOM from several kinds of source, each option repeatable.

    Weasis starts them in this order: local, remote, wado, zip, iwado, portable.

    Attributes
    ----------
    local : tuple of str
        ``-l --local=PATH``: a file or a folder (read recursively).
    remote : tuple of str
        ``-r --remote=URI``: a DICOM file's URL (a WADO-URI request, a plain http(s) file).
    wado : tuple of str
        ``-w --wado=URI``: a manifest (XML or JSON, gzip detected by content), file or URL.
    zip : tuple of str
        ``-z --zip=URI``: a DICOM ZIP, file or URL.
    iwado : tuple of str
        ``-i --iwado=DATA``: an inline manifest, base64 of gzip (see
        :func:`dicomnb.core.manifest.parse_inline_manifest`).
    portable : bool
        ``-p --portable``: the folders beside the working directory (see
        :func:`weasis_portable_folders`).
    """

    name: ClassVar[str] = "dicom:get"
    local: tuple[str, ...] = ()
    remote: tuple[str, ...] = ()
    wado: tuple[str, ...] = ()
    zip: tuple[str, ...] = ()
    iwado: tuple[str, ...] = ()
    portable: bool = False


@dataclass(frozen=True)
class RsRequest:
    """One ``$dicom:rs -r`` value: the query string split on ``&`` and ``=`` (not decoded again:
    the URI was). Keys are those of :data:`RS_QUERY_KEYS`, spelled as Weasis spells them."""

    params: tuple[tuple[str, str], ...]

    def values(self, key: str) -> tuple[str, ...]:
        """Every value given for ``key`` (``studyUID=1&studyUID=2`` gives two)."""
        return tuple(v for k, v in self.params if k == key)

    @property
    def request_type(self) -> str | None:
        """``requestType`` (IHE IID: ``STUDY`` or ``PATIENT``), or None."""
        found = self.values("requestType")
        return found[0] if found else None

    @property
    def patient_ids(self) -> tuple[str, ...]:
        return self.values("patientID")

    @property
    def study_uids(self) -> tuple[str, ...]:
        return self.values("studyUID")

    @property
    def accession_numbers(self) -> tuple[str, ...]:
        return self.values("accessionNumber")

    @property
    def series_uids(self) -> tuple[str, ...]:
        return self.values("seriesUID")

    @property
    def object_uids(self) -> tuple[str, ...]:
        return self.values("objectUID")


@dataclass(frozen=True)
class DicomRs:
    """``$dicom:rs``: query a DICOMweb service (QIDO-RS) and retrieve what matches (WADO-RS).

    Headers are ``(name, value)`` pairs, names in lower case, as Weasis's ``getHeaders`` makes
    them (``Authorization: &access_token=T`` becomes ``Bearer T``, for dcm4chee-arc).

    Attributes
    ----------
    url : str
        ``-u --url=URL``: the DICOMweb root, without a trailing slash.
    requests : tuple of RsRequest
        ``-r --request=QUERY``, repeatable: ``studyUID=1.2.3``, ``patientID=P1&...``.
    headers : tuple of (str, str)
        ``-H --header=HEADER``: sent with every request.
    query_headers, retrieve_headers : tuple of (str, str)
        ``--query-header`` (QIDO-RS only), ``--retrieve-header`` (WADO-RS only).
    query_ext, retrieve_ext : str
        ``--query-ext``, ``--retrieve-ext``: extra query parameters for QIDO-RS / WADO-RS URLs.
    accept_ext : str
        ``--accept-ext``: parameters of the WADO-RS ``Accept`` (default ``transfer-syntax=*``).
    show_whole_study : bool
        ``--show-whole-study``: list the study's other series too (ready to download).
    """

    name: ClassVar[str] = "dicom:rs"
    url: str
    requests: tuple[RsRequest, ...]
    headers: tuple[tuple[str, str], ...] = ()
    query_headers: tuple[tuple[str, str], ...] = ()
    retrieve_headers: tuple[tuple[str, str], ...] = ()
    query_ext: str = ""
    retrieve_ext: str = ""
    accept_ext: str = "transfer-syntax=*"
    show_whole_study: bool = False

    def qido_headers(self) -> dict[str, str]:
        """The headers of a QIDO-RS request: ``--query-header`` then ``-H`` (``-H`` wins)."""
        return dict(self.query_headers + self.headers)

    def wado_headers(self) -> dict[str, str]:
        """The headers of a WADO-RS request: ``--retrieve-header`` then ``-H`` (``-H`` wins)."""
        return dict(self.retrieve_headers + self.headers)


@dataclass(frozen=True)
class DicomClose:
    """``$dicom:close``: remove from the catalog, and stop their downloads.

    ``all`` (``-a``) closes everything and makes the other options moot, as in Weasis;
    ``patient`` (``-p ID``: Patient ID), ``study`` (``-y UID``) and ``series`` (``-s UID``) are
    repeatable.
    """

    name: ClassVar[str] = "dicom:close"
    all: bool = False
    patient: tuple[str, ...] = ()
    study: tuple[str, ...] = ()
    series: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageGet:
    """``$image:get``: open plain images (JPEG, PNG...): ``-f --file=FILE``, ``-u --url=URL``."""

    name: ClassVar[str] = "image:get"
    file: tuple[str, ...] = ()
    url: tuple[str, ...] = ()


@dataclass(frozen=True)
class WeasisConfig:
    """``$weasis:config name=value...``: the Weasis launcher's settings (``cdb``, ``pro``, ``wcfg``,
    ``auth``...). Kept so a Weasis link parses; dicomnb has no launcher and skips it."""

    name: ClassVar[str] = "weasis:config"
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CommandHelp:
    """``-?``/``--help`` on a command: its usage, to print instead of running anything."""

    name: ClassVar[str] = "help"
    command: str
    usage: str = field(repr=False, compare=False)


Command = DicomGet | DicomRs | DicomClose | ImageGet | WeasisConfig | CommandHelp


# --- the options of each command (Weasis's usage strings) --------------------------------------


@dataclass(frozen=True)
class _Option:
    short: str | None
    long: str
    metavar: str | None  # None: a flag
    help: str

    def label(self) -> str:
        names = f"-{self.short}/--{self.long}" if self.short else f"--{self.long}"
        return f"{names} {self.metavar}" if self.metavar else names


_HELP = _Option("?", "help", None, "show this help")

_OPTIONS: dict[str, tuple[_Option, ...]] = {
    "dicom:get": (
        _Option("l", "local", "PATH", "DICOM files from a local file or folder (recursive)"),
        _Option("r", "remote", "URI", "a DICOM file from a URL (e.g. WADO-URI)"),
        _Option("w", "wado", "URI", "the instances of an XML or JSON manifest (file or URL)"),
        _Option("z", "zip", "URI", "a DICOM ZIP (file or URL)"),
        _Option("p", "portable", None, "the folders dicom, DICOM, IMAGES, images (or a DICOMDIR) here"),
        _Option("i", "iwado", "DATA", "an inline manifest: base64 of gzip"),
        _HELP,
    ),
    "dicom:rs": (
        _Option("u", "url", "URL", "the DICOMweb root URL"),
        _Option("r", "request", "QUERY", "what to load: studyUID=, patientID=, accessionNumber=, "
                                         "seriesUID=, objectUID= (joined with &)"),
        _Option("H", "header", "HEADER", "a header for every request ('Name: value')"),
        _Option(None, "query-header", "HEADER", "a header for the QIDO-RS queries only"),
        _Option(None, "retrieve-header", "HEADER", "a header for the WADO-RS retrieves only"),
        _Option(None, "query-ext", "EXT", "extra parameters for the QIDO-RS URLs"),
        _Option(None, "retrieve-ext", "EXT", "extra parameters for the WADO-RS URLs"),
        _Option(None, "accept-ext", "EXT", "Accept parameters of WADO-RS (default transfer-syntax=*)"),
        _Option(None, "auth-uid", "UID", "a Weasis authentication method (not in dicomnb)"),
        _Option(None, "oidc-iss", "UID", "an OpenID Connect issuer (not in dicomnb)"),
        _Option(None, "oidc-login", "UID", "an OpenID Connect login (not in dicomnb)"),
        _Option(None, "show-whole-study", None, "list the other series of the study too"),
        _HELP,
    ),
    "dicom:close": (
        _Option("a", "all", None, "close everything"),
        _Option("p", "patient", "ID", "close a patient (Patient ID)"),
        _Option("y", "study", "UID", "close a study (Study Instance UID)"),
        _Option("s", "series", "UID", "close a series (Series Instance UID)"),
        _HELP,
    ),
    "image:get": (
        _Option("f", "file", "FILE", "an image file"),
        _Option("u", "url", "URL", "an image URL"),
        _HELP,
    ),
}

_SYNOPSIS = {
    "dicom:get": "dicom:get ([-l PATH]... [-w URI]... [-r URI]... [-p] [-i DATA]... [-z URI]...)",
    "dicom:rs": "dicom:rs -u URL -r QUERY... [-H HEADER]... [--query-header HEADER]... "
                "[--retrieve-header HEADER]...",
    "dicom:close": "dicom:close (-a | ([-p ID]... [-y UID]... [-s UID]...))",
    "image:get": "image:get ([-f FILE]... [-u URL]...)",
    "weasis:config": "weasis:config NAME=VALUE... (read and skipped: launcher settings)",
}

#: The command names understood, as written after ``$``.
SUPPORTED_COMMANDS = ("dicom:get", "dicom:rs", "dicom:close", "image:get", "weasis:config")


def _usage(command: str) -> str:
    lines = [f"Usage: {_SYNOPSIS[command]}"]
    for option in _OPTIONS.get(command, ()):
        lines.append(f"  {option.label():<30} {option.help}")
    return "\n".join(lines)


def _supported() -> str:
    runnable = ", ".join(f"${name}" for name in SUPPORTED_COMMANDS if name != "weasis:config")
    return f"{runnable} (and $weasis:config, read and skipped)"


# --- reading ------------------------------------------------------------------------------------


def parse_uri(uri: str, *, windows: bool | None = None) -> list[Command]:
    """The commands of a ``weasis://`` URI, in order.

    Parameters
    ----------
    uri : str
        ``weasis://%24dicom%3Aget+-w+...``, ``weasis://?$dicom:get...``, ``weasis:///?...``.
    windows : bool, optional
        Drop a trailing ``/`` from the last command, as Weasis does on Windows (where browsers
        add one). Default: whether this is Windows.

    Raises
    ------
    CommandError
        Not a ``weasis://`` URI, a malformed ``%`` escape, no command, or a command that cannot be
        parsed (see :func:`parse_command`).
    """
    text = uri.strip()
    if not _URI.match(text):
        raise CommandError(f"{_shorten(text)!r} is not a weasis:// URI: it must start with "
                           "weasis:// (e.g. weasis://%24dicom%3Aget+-w+https%3A%2F%2Fhost%2Fmf.xml)")
    bad = _BAD_ESCAPE.search(text)
    if bad:
        raise CommandError(f"the weasis:// URI has a malformed escape {text[bad.start():bad.start() + 3]!r} "
                           f"at character {bad.start()}: a % must be followed by two hex digits "
                           "(write %25 for a literal %)")
    pieces = unquote_plus(text, errors="replace").split("$")
    while pieces and not pieces[-1]:
        pieces.pop()  # as Java's String.split drops trailing empty strings
    if len(pieces) < 2:
        raise CommandError("the weasis:// URI holds no command: commands start with $ (encoded "
                           f"%24), e.g. $dicom:get -w URL; the supported commands are {_supported()}")
    commands = pieces[1:]
    if (sys.platform.startswith("win") if windows is None else windows) and commands[-1].endswith("/"):
        commands[-1] = commands[-1][:-1]
    return [parse_command(piece) for piece in commands if piece.strip()]


def parse_commands(text: str) -> list[Command]:
    """The commands of a text, in order: ``$dicom:get -l /data $dicom:close -a``.

    Each command starts with an unquoted ``$`` at the start of a word, as on Weasis's command
    line; a single command may leave its ``$`` out. A ``weasis://`` URI is read with
    :func:`parse_uri`.

    Raises
    ------
    CommandError
        An unknown command or option, unbalanced quotes, a missing value; the message names
        what is supported.
    """
    stripped = text.strip()
    if _URI.match(stripped):
        return parse_uri(stripped)
    tokens = _tokenize(stripped)
    if not tokens:
        raise CommandError(f"no command given: the supported commands are {_supported()}")
    starts = [i for i, token in enumerate(tokens) if token.command_start]
    if not starts or starts[0] != 0:
        first = tokens[0].text
        if not _COMMAND_NAME.match(first):
            raise CommandError(f"{first!r} is not a command: commands start with $, e.g. "
                               f"$dicom:get -l PATH; the supported commands are {_supported()}")
        starts.insert(0, 0)
    groups = [tokens[a:b] for a, b in zip(starts, [*starts[1:], len(tokens)], strict=True)]
    return [_build(group[0].text.removeprefix("$") if group[0].command_start else group[0].text,
                   [token.text for token in group[1:]]) for group in groups]


def parse_command(text: str) -> Command:
    """One command without its ``$``: ``dicom:get -l /data`` (a piece of a ``weasis://`` URI)."""
    tokens = [token.text for token in _tokenize(text)]
    if not tokens:
        raise CommandError(f"empty command: the supported commands are {_supported()}")
    return _build(tokens[0].removeprefix("$"), tokens[1:])


@dataclass(frozen=True)
class _Token:
    text: str
    command_start: bool  # began with an unquoted "$" (and is more than "$")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start = i
        parts: list[str] = []
        while i < n and not text[i].isspace():
            char = text[i]
            if char == "'":
                end = text.find("'", i + 1)
                if end < 0:
                    raise CommandError(f"unclosed single quote at character {i} of {_shorten(text)!r}")
                parts.append(text[i + 1:end])
                i = end + 1
            elif char == '"':
                i += 1
                while True:
                    if i >= n:
                        raise CommandError(f"unclosed double quote at character {start} of "
                                           f"{_shorten(text)!r}")
                    char = text[i]
                    if char == '"':
                        i += 1
                        break
                    if char == "\\" and i + 1 < n and text[i + 1] in '"\\$`':
                        parts.append(text[i + 1])
                        i += 2
                    else:
                        parts.append(char)
                        i += 1
            elif char == "\\" and i + 1 < n and (text[i + 1].isspace() or text[i + 1] in "\"'\\$"):
                parts.append(text[i + 1])
                i += 2
            else:
                parts.append(char)
                i += 1
        word = "".join(parts)
        tokens.append(_Token(word, text[start] == "$" and len(word) > 1))
    return tokens


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _parse_options(command: str, args: Sequence[str]) -> tuple[dict[str, list[str]], set[str]]:
    """Weasis's ``Options.parse``, strict about unknown options and bare arguments."""
    options = _OPTIONS[command]
    by_short = {o.short: o for o in options if o.short}
    by_long = {o.long: o for o in options}
    values: dict[str, list[str]] = {}
    flags: set[str] = set()
    known = ", ".join(o.label() for o in options)

    def bare(arg: str) -> CommandError:
        return CommandError(f"{command} takes no bare argument ({arg!r}): give each value after "
                            f"its option. Its options: {known}")

    pending: _Option | None = None
    pending_as = ""
    end_of_options = False
    for arg in args:
        if pending is not None:
            values.setdefault(pending.long, []).append(arg)
            pending = None
        elif end_of_options or not arg.startswith("-") or arg == "-":
            raise bare(arg)
        elif arg == "--":
            end_of_options = True
        elif arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            matches = [by_long[name]] if name in by_long else [o for o in options if o.long.startswith(name)]
            if not matches:
                raise CommandError(f"{command} has no option '--{name}'. Its options: {known}")
            if len(matches) > 1:
                names = ", ".join(f"--{o.long}" for o in matches)
                raise CommandError(f"{command}: '--{name}' is ambiguous ({names}). Its options: {known}")
            option = matches[0]
            if option.metavar is None:
                if eq:
                    raise CommandError(f"{command}: '--{option.long}' takes no value (it is a flag)")
                flags.add(option.long)
            elif eq:
                values.setdefault(option.long, []).append(value)
            else:
                pending, pending_as = option, f"--{option.long}"
        else:
            for k in range(1, len(arg)):
                short = by_short.get(arg[k])
                if short is None:
                    raise CommandError(f"{command} has no option '-{arg[k]}'. Its options: {known}")
                if short.metavar is None:
                    flags.add(short.long)
                    continue
                rest = arg[k + 1:]
                if rest:
                    values.setdefault(short.long, []).append(rest)
                else:
                    pending, pending_as = short, f"-{short.short}"
                break
    if pending is not None:
        raise CommandError(f"{command}: option '{pending_as}' needs a value ({pending.metavar}). "
                           f"Usage: {_SYNOPSIS[command]}")
    return values, flags


def _build(name: str, args: list[str]) -> Command:
    if name == "weasis:config":
        return WeasisConfig(tuple((key, value) for arg in args
                                  for key, eq, value in [arg.partition("=")] if eq and key))
    if name not in _OPTIONS:
        hint = ""
        lowered = name.lower()
        if lowered in SUPPORTED_COMMANDS:
            hint = f" (commands are case-sensitive: ${lowered})"
        raise CommandError(f"unknown command ${name}{hint}. The supported commands are "
                           f"{_supported()}")
    values, flags = _parse_options(name, args)
    if "help" in flags:
        return CommandHelp(name, _usage(name))

    def many(key: str) -> tuple[str, ...]:
        return tuple(values.get(key, ()))

    command: Command
    if name == "dicom:get":
        command = DicomGet(local=many("local"), remote=many("remote"), wado=many("wado"),
                           zip=many("zip"), iwado=many("iwado"), portable="portable" in flags)
        empty = not (values or command.portable)
    elif name == "dicom:close":
        command = DicomClose(all="all" in flags, patient=many("patient"), study=many("study"),
                             series=many("series"))
        empty = not (values or command.all)
    elif name == "image:get":
        command = ImageGet(file=many("file"), url=many("url"))
        empty = not values
    else:
        return _build_rs(values, flags)
    if empty:
        raise CommandError(f"${name} was given nothing to do. {_usage(name)}")
    return command


def _build_rs(values: dict[str, list[str]], flags: set[str]) -> DicomRs:
    for option in ("auth-uid", "oidc-iss", "oidc-login"):
        if option in values:
            raise CommandError(f"dicom:rs --{option} refers to an authentication set up inside "
                               "Weasis, which dicomnb does not have: send the credentials as a "
                               "header instead, e.g. -H 'Authorization: Bearer TOKEN'")
    urls = [u.strip() for u in values.get("url", ()) if u.strip()]
    if not urls:
        raise CommandError(f"$dicom:rs needs the DICOMweb URL (-u URL). {_usage('dicom:rs')}")
    requests = tuple(_rs_request(q) for q in values.get("request", ()))
    if not requests:
        raise CommandError("$dicom:rs needs what to load (-r QUERY, e.g. -r studyUID=1.2.3). "
                           + _usage("dicom:rs"))
    return DicomRs(
        url=urls[-1].rstrip("/"),  # the last -u wins, as Options.get gives it
        requests=requests,
        headers=_headers(values.get("header", ())),
        query_headers=_headers(values.get("query-header", ())),
        retrieve_headers=_headers(values.get("retrieve-header", ())),
        query_ext=(values.get("query-ext") or [""])[-1],
        retrieve_ext=(values.get("retrieve-ext") or [""])[-1],
        accept_ext=(values.get("accept-ext") or [""])[-1] or "transfer-syntax=*",
        show_whole_study="show-whole-study" in flags,
    )


def _rs_request(query: str) -> RsRequest:
    """Weasis's ``RsQueryParams.getQueryMap``: split on ``&``, then on the first ``=``."""
    params: list[tuple[str, str]] = []
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if not key:
            continue
        if key not in RS_QUERY_KEYS:
            raise CommandError(f"dicom:rs -r: unknown query key {key!r} in {query!r}. The keys are "
                               f"{', '.join(_RS_ID_KEYS)} (and the IHE IID keys "
                               f"{', '.join(RS_QUERY_KEYS[len(_RS_ID_KEYS):])})")
        params.append((key, value))
    request = RsRequest(tuple(params))
    kind = request.request_type
    if kind == "STUDY":
        if not any(request.study_uids + request.accession_numbers):
            raise CommandError(f"dicom:rs -r {query!r}: requestType=STUDY needs studyUID= or "
                               "accessionNumber=")
    elif kind == "PATIENT":
        if not any(request.patient_ids):
            raise CommandError(f"dicom:rs -r {query!r}: requestType=PATIENT needs patientID=")
    elif kind is not None:
        raise CommandError(f"dicom:rs -r {query!r}: requestType={kind} is not supported: it is "
                           "STUDY or PATIENT (IHE Invoke Image Display), or left out")
    elif not any(value for key, value in params if key in _RS_ID_KEYS):
        raise CommandError(f"dicom:rs -r {query!r} names nothing to load: give one of "
                           f"{', '.join(f'{k}=' for k in _RS_ID_KEYS)}")
    return request


def _headers(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """Weasis's ``RsQueryParams.getHeaders``: ``Name: value``, the name trimmed and lowered."""
    headers: list[tuple[str, str]] = []
    for item in items:
        name, colon, value = item.partition(":")
        name, value = name.strip().lower(), value.strip()
        if not name:
            raise CommandError(f"dicom:rs: header {item!r} has no name: write 'Name: value'")
        if colon and name == "authorization" and len(value) > 14 and value.startswith("&access_token="):
            value = "Bearer " + value[len("&access_token="):]  # dcm4chee-arc's form, as Weasis reads it
        headers.append((name, value))
    return tuple(headers)


# --- -p: the portable folders ------------------------------------------------------------------


@dataclass(frozen=True)
class PortableSources:
    """What ``$dicom:get -p`` reads in a folder.

    Weasis imports the DICOMDIR when there is one and it lists series; otherwise (or when it
    lists none) the folders, recursively.

    Attributes
    ----------
    dicomdir : Path or None
        ``DICOMDIR`` in the folder, if it is a readable file.
    folders : tuple of Path
        The folders of :data:`PORTABLE_FOLDERS` that exist there, each once (``dicom`` and
        ``DICOM`` are one folder on a case-insensitive file system).
    """

    dicomdir: Path | None
    folders: tuple[Path, ...]

    def __bool__(self) -> bool:
        return self.dicomdir is not None or bool(self.folders)


def weasis_portable_folders(cwd: str | os.PathLike[str],
                            names: Sequence[str] = PORTABLE_FOLDERS) -> PortableSources:
    """The sources ``$dicom:get -p`` reads from ``cwd``: its ``DICOMDIR`` and portable folders.

    Weasis looks beside its executable (``weasis.portable.dir``); dicomnb, which has none, looks
    in the working directory. Nothing is read: only which paths exist is checked.
    """
    base = Path(cwd)
    dicomdir = base / "DICOMDIR"
    folders: list[Path] = []
    for name in names:
        folder = base / name
        if not folder.is_dir():
            continue
        if any(_same(folder, seen) for seen in folders):
            continue
        folders.append(folder)
    readable = dicomdir.is_file() and os.access(dicomdir, os.R_OK)
    return PortableSources(dicomdir if readable else None, tuple(folders))


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
