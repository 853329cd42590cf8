"""The command line: the same verbs as the Python API.

    dicomnb get [-l PATH ...] [-z ZIP ...] [-r URL ...] [-w MANIFEST ...] [-i DATA ...] [-p]
                [--password-file FILE] [--no-recursive] [--copy] [--json]
    dicomnb open 'weasis://?$dicom:get -w ...' [--password-file FILE] [--json]
    dicomnb node add NAME --aet AET --host HOST --port PORT [--wado-url URL]
                [--tls-ca FILE] [--tls-cert FILE] [--tls-key FILE] [--replace]
    dicomnb node add NAME --dicomweb URL [--qido-url URL] [--wado-rs-url URL]
                [--header 'Name: value' ...] [--auth none|basic|bearer] [--user NAME]
                [--secret-env VAR] [--replace]
    dicomnb node list [--json]
    dicomnb node remove NAME
    dicomnb echo NAME [--timeout SECONDS]
    dicomnb query NAME [--patient-name TEXT] [--patient-id TEXT] [--accession TEXT]
                [--study-description TEXT] [--study-id TEXT] [--referring-physician TEXT]
                [--modality CT ...] [--period last-week | --date FROM-TO]
                [--level study|series|image] [--study UID] [--series UID] [--limit N]
                [--page N] [--preset NAME] [--timeout SECONDS] [--json]
    dicomnb retrieve NAME --study UID [--series UID ...]
                [--method c-get|c-move|wado-uri|wado-rs] [--dest DIR] [--json]
    dicomnb downloads [--json]
    dicomnb downloads resume [ID ...] [--json]
    dicomnb downloads retry-missing [ID ...] [--json]
    dicomnb downloads cancel ID [ID ...]
    dicomnb downloads clear
    dicomnb demo [--port PORT] [--empty]

Exit status: 0 when the command ran (even if some files could not be imported: they are
reported), 1 when an optional dependency is missing (the message names the extra), 2 for
unusable arguments (an unknown node, a bad AE title...), 3 when an archive needs a password
or the password given is wrong (a ZIP, or a DICOMweb server answering 401/403), 4 when the network failed (refused, rejected, aborted,
timed out, a failure status), 5 when a retrieve ended with instances missing (they are
listed: in ``"missing"`` with --json, ``"not_retrieved"`` for ``get`` and ``open``; running the
same command again, or ``dicomnb downloads retry-missing``, fetches just those).

``get`` takes the options of Weasis's ``$dicom:get`` (each repeatable) and ``open`` runs a
``weasis://`` URI (or Weasis commands) with :mod:`dicomnb.runner`; a manifest that cannot be
read exits 2, an archive that cannot be reached 4, as for the other commands, once every other
source has run.

A retrieve runs as download jobs, one per series, kept beside the store: ``dicomnb downloads``
lists them (with their state and counts) from any shell, and ``resume`` finishes those that
were paused, interrupted (their process was killed) or incomplete, into the same ``--dest``.
Progress goes to standard error: a bar on a terminal, a line per finished series otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from dicomnb import network, retrieving, runner
from dicomnb.commands import DicomGet, DicomRs, parse_commands
from dicomnb.core.criteria import Period
from dicomnb.core.downloads import DownloadProgress, JobStatus
from dicomnb.core.errors import (
    AuthenticationFailed,
    CommandError,
    DependencyMissing,
    DownloadError,
    InputError,
    ManifestError,
    PasswordError,
    RetrieveIncomplete,
    SourceError,
)
from dicomnb.core.nodes import DicomNode, DicomWebNode
from dicomnb.core.query import QueryResult, parse_date_range
from dicomnb.core.retrieval import RetrieveResult

__all__ = ["main"]

EXIT_OK = 0
EXIT_DEPENDENCY = 1
EXIT_USAGE = 2
EXIT_PASSWORD = 3
EXIT_NETWORK = 4
EXIT_INCOMPLETE = 5


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _setup_argparser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dicomnb", description="Import DICOM data into a catalog, as in a notebook.")
    parser.add_argument("--version", action="version", version=f"dicomnb {api_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    get = commands.add_parser(
        "get", help="import local files/folders, DICOM ZIPs, DICOMDIR media, DICOM URLs and manifests",
        description="Import local files and folders (recursively), DICOM ZIP archives, DICOMDIR media, "
        "DICOM files by URL and the instances of Weasis manifests (as Weasis's $dicom:get), then print "
        "a summary (or JSON with --json). Each option is repeatable.",
    )
    get.add_argument("-l", "--local", metavar="PATH", action="append", default=[],
                     help="a file or folder (a ZIP file or a folder holding a DICOMDIR is "
                     "imported as such); repeatable")
    get.add_argument("-z", "--zip", metavar="ZIP", action="append", default=[],
                     help="a DICOM ZIP archive, file or URL; repeatable")
    get.add_argument("-r", "--remote", metavar="URL", action="append", default=[],
                     help="a DICOM file's URL (a WADO-URI request), downloaded into the store; repeatable")
    get.add_argument("-w", "--wado", metavar="MANIFEST", action="append", default=[],
                     help="a Weasis manifest (XML or JSON, gzipped or not), file or URL: its instances are "
                     "retrieved as download jobs; repeatable")
    get.add_argument("-i", "--iwado", metavar="DATA", action="append", default=[],
                     help="an inline manifest: base64 of the gzipped manifest; repeatable")
    get.add_argument("-p", "--portable", action="store_true",
                     help="the DICOMDIR, or the folders dicom, DICOM, IMAGES, images, in the working directory")
    _import_options(get)

    open_ = commands.add_parser(
        "open", help="run a weasis:// URI (or Weasis commands): $dicom:get, $dicom:rs, $dicom:close, $image:get",
        description="Run the commands of a weasis:// URI, or Weasis commands given as text "
        "('$dicom:get -l PATH $dicom:close -a'), in order, and print what each did (or JSON "
        "with --json: the object 'dicomnb get --json' prints, over every command, and 'commands').",
    )
    open_.add_argument("uri", metavar="URI", help="weasis://?... (URL-encoded) or commands starting with $")
    _import_options(open_)

    node = commands.add_parser("node", help="add, list or remove the DICOM nodes (archives) to query",
                               description="Manage the DICOM nodes kept in the configuration folder "
                               "($DICOMNB_CONFIG_DIR or the user's config dir).")
    node_commands = node.add_subparsers(dest="node_command", required=True, parser_class=_Parser)
    add = node_commands.add_parser(
        "add", help="add a node",
        description="Add a DIMSE node (--aet, --host, --port) or a DICOMweb node (--dicomweb URL). "
        "No password or token is ever saved: a DICOMweb secret is read from the environment "
        "variable named by --secret-env, or asked for.")
    add.add_argument("name", metavar="NAME", help="the name to call it by")
    add.add_argument("--aet", help="its called AE title (16 characters at most)")
    add.add_argument("--host", help="its host name or address")
    add.add_argument("--port", type=int, help="its DICOM port")
    add.add_argument("--wado-url", metavar="URL", help="its WADO-URI base URL (http://host:8042/wado)")
    add.add_argument("--tls-ca", metavar="FILE", help="the server's CA certificates (PEM): turns TLS on")
    add.add_argument("--tls-cert", metavar="FILE", help="our client certificate (PEM)")
    add.add_argument("--tls-key", metavar="FILE", help="the key of our client certificate (PEM)")
    web = add.add_argument_group("DICOMweb")
    web.add_argument("--dicomweb", metavar="URL", help="a DICOMweb base URL (http://host:8042/dicom-web)")
    web.add_argument("--qido-url", metavar="URL", help="its QIDO-RS prefix, when it differs")
    web.add_argument("--wado-rs-url", metavar="URL", help="its WADO-RS prefix, when it differs")
    web.add_argument("--header", dest="headers", metavar="'NAME: VALUE'", action="append",
                     help="an extra HTTP header sent with every request (repeatable)")
    web.add_argument("--auth", choices=["none", "basic", "bearer"], default="none",
                     help="how the server authenticates us (default none)")
    web.add_argument("--user", metavar="NAME", help="the user name of basic authentication")
    web.add_argument("--secret-env", metavar="VAR",
                     help="the environment variable holding the password or token (never saved)")
    add.add_argument("--replace", action="store_true", help="replace a node of the same name")
    listing = node_commands.add_parser("list", help="list the nodes", description="List the nodes.")
    listing.add_argument("--json", action="store_true", help='print {"nodes": [...]}')
    remove = node_commands.add_parser("remove", help="remove a node", description="Remove a node.")
    remove.add_argument("name", metavar="NAME")

    echo = commands.add_parser("echo", help="check that a node answers (C-ECHO, or a QIDO-RS request)",
                               description="Send a C-ECHO to a saved DIMSE node, or a one-study QIDO-RS "
                               "search to a DICOMweb node, and print the time it took.")
    echo.add_argument("name", metavar="NAME", help="a node added with 'dicomnb node add'")
    echo.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                      help="seconds allowed for connecting and for each message (default 10)")

    query = commands.add_parser(
        "query", help="search a node (C-FIND or QIDO-RS): studies, or the series/instances of a study",
        description="Search a saved node (Study Root C-FIND, or QIDO-RS for a DICOMweb node) and "
        "print the matches as a table "
        '(or {"rows": [...]} with --json). Text fields take * and ? wildcards. With no '
        "criteria at all, the preset chosen last applies.",
    )
    query.add_argument("name", metavar="NAME", help="a node added with 'dicomnb node add'")
    for option, field, what in _TEXT_OPTIONS:
        query.add_argument(option, dest=field, metavar="TEXT", help=what)
    query.add_argument("--modality", dest="modalities", metavar="CODE", nargs="+", action="extend",
                       help="modalities in the study (any of them matches): --modality CT MR")
    when = query.add_mutually_exclusive_group()
    when.add_argument("--period", choices=[p.value for p in Period], metavar="PERIOD",
                      help="a named study-date period: " + ", ".join(p.value for p in Period))
    when.add_argument("--date", metavar="FROM-TO",
                      help="study dates: YYYYMMDD-YYYYMMDD or YYYY-MM-DD..YYYY-MM-DD (an end may "
                      "be left open), or one date")
    query.add_argument("--level", choices=["study", "series", "image"], default="study",
                       help="what to list (default study); series and image need --study")
    query.add_argument("--study", metavar="UID", help="the StudyInstanceUID to look in")
    query.add_argument("--series", metavar="UID", help="the SeriesInstanceUID to look in (--level image)")
    query.add_argument("--limit", type=int, default=0, metavar="N",
                       help="stop after N matches (default 0: no limit); also the page size")
    query.add_argument("--page", type=int, default=1, metavar="N",
                       help="show page N of --limit matches (default 1)")
    query.add_argument("--preset", metavar="NAME",
                       help="start from a saved preset (it becomes the one chosen last)")
    query.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                       help="seconds allowed for connecting and between two answers (default 30)")
    query.add_argument("--json", action="store_true", help='print {"rows": [...], ...}')

    retrieve = commands.add_parser(
        "retrieve", help="retrieve a study or some of its series into the store and the catalog",
        description="List a study's instances (C-FIND or QIDO-RS), fetch those the local store does "
        "not hold yet (C-GET, C-MOVE, WADO-URI or WADO-RS), and check that every one arrived. Exit status 5 when "
        "some are missing: they are listed, and running the command again fetches just those.",
    )
    retrieve.add_argument("name", metavar="NAME", help="a node added with 'dicomnb node add'")
    retrieve.add_argument("--study", required=True, metavar="UID", help="the StudyInstanceUID")
    retrieve.add_argument("--series", metavar="UID", nargs="+", action="extend",
                          help="only these SeriesInstanceUIDs of the study")
    retrieve.add_argument("--method", choices=["c-get", "c-move", "wado-uri", "wado-rs"],
                          help="c-get (default for DIMSE nodes), c-move (the archive must know our AE "
                          "title and port), wado-uri (the node's --wado-url) or wado-rs (DICOMweb nodes)")
    retrieve.add_argument("--dest", metavar="DIR", help="also copy the files into DIR")
    retrieve.add_argument("--json", action="store_true",
                          help='print {"retrieved": N, "missing": [...], "instances": [...]}')

    downloads = commands.add_parser(
        "downloads", help="list, resume, retry or cancel the download jobs (one per series)",
        description="List the download jobs kept beside the store (one per series of a retrieve), "
        "with their state (queued, running, paused, incomplete, complete, interrupted) and counts; "
        "resume them, download their missing files again, cancel or clear them. Exit status 5 when "
        "a resumed job still misses instances.")
    downloads.add_argument("--json", action="store_true", help='print {"jobs": [...]}')
    download_commands = downloads.add_subparsers(dest="downloads_command", parser_class=_Parser)
    for name, text in (("resume", "resume jobs (no ID: every unfinished one)"),
                       ("retry-missing", "download the missing files again (no ID: every incomplete job)")):
        verb = download_commands.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        verb.add_argument("ids", metavar="ID", nargs="*", help="job IDs, as 'dicomnb downloads' lists them")
        verb.add_argument("--json", action="store_true", help='print {"jobs": [...]} when they end')
    cancel = download_commands.add_parser(
        "cancel", help="stop and forget jobs (what they fetched stays in the store)",
        description="Stop and forget jobs; the instances they fetched stay in the store.")
    cancel.add_argument("ids", metavar="ID", nargs="+", help="job IDs")
    download_commands.add_parser("clear", help="forget the complete jobs", description="Forget the complete jobs.")

    demo = commands.add_parser(
        "demo", help="run the demo archive (pydicom's samples) as node 'demo' until Ctrl-C",
        description="Run pynetdicom's Q/R SCP on 127.0.0.1, loaded with pydicom's sample files, "
        "and save it as node 'demo' (query it from another shell or a notebook) until Ctrl-C "
        "or SIGTERM, which stop it and remove the node. Needs dicomnb[network].",
    )
    demo.add_argument("--port", type=int, default=0, help="its DICOM port (default: a free one)")
    demo.add_argument("--empty", action="store_true", help="do not load the sample files")
    return parser


#: The text options of ``dicomnb query``: option, SearchCriteria field, help.
_TEXT_OPTIONS = (
    ("--patient-name", "patient_name", "patient's name, e.g. 'Doe^J*'"),
    ("--patient-id", "patient_id", "patient ID"),
    ("--accession", "accession_number", "accession number"),
    ("--study-description", "study_description", "study description"),
    ("--study-id", "study_id", "study ID"),
    ("--referring-physician", "referring_physician_name", "referring physician's name"),
)

#: The columns ``dicomnb query`` prints, per level (all of them are in --json).
_TABLE = {
    "study": ("PatientName", "PatientID", "StudyDate", "ModalitiesInStudy", "StudyDescription",
              "AccessionNumber", "NumberOfStudyRelatedInstances", "StudyInstanceUID"),
    "series": ("SeriesNumber", "Modality", "SeriesDescription", "NumberOfSeriesRelatedInstances",
               "SeriesInstanceUID"),
    "image": ("InstanceNumber", "Rows", "Columns", "NumberOfFrames", "SOPClassUID", "SOPInstanceUID"),
}
_SHORT = {"NumberOfStudyRelatedInstances": "Instances", "NumberOfSeriesRelatedInstances": "Instances",
          "ModalitiesInStudy": "Modalities", "NumberOfFrames": "Frames"}


def api_version() -> str:
    from dicomnb import __version__

    return __version__


def _read_password(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n")
    except OSError as exc:
        raise InputError(f"cannot read the password file {path}: {exc.strerror or exc}") from exc


def _import_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password-file", metavar="FILE",
                        help="a file whose first line is the password of encrypted archives")
    parser.add_argument("--no-recursive", action="store_true", help="do not search sub-folders")
    parser.add_argument("--copy", action="store_true",
                        help="copy DICOMDIR media and ZIP entries into the cache first (by default "
                        "ZIP instances are read in their archive)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _status(results: Sequence[runner.CommandResult]) -> int:
    """The exit status of what commands did: their first failure's, else 5 when instances are missing."""
    for failure in (f for result in results for f in result.failures):
        if isinstance(failure, DependencyMissing):
            return EXIT_DEPENDENCY
        if isinstance(failure, (PasswordError, AuthenticationFailed)):
            return EXIT_PASSWORD
        if isinstance(failure, SourceError):
            return EXIT_NETWORK
        if isinstance(failure, (ManifestError, CommandError)):
            return EXIT_USAGE
    return EXIT_INCOMPLETE if any(result.not_retrieved for result in results) else EXIT_OK


def _run_commands(args: argparse.Namespace, prefix: str, work: Callable[..., list[runner.CommandResult]],
                  downloading: bool = True) -> int:
    """Run commands with the import options of ``args``; print their JSON or summary; the exit status.

    Download progress goes to standard error when ``downloading``."""
    try:
        password = _read_password(args.password_file)
    except InputError as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with _ProgressPrinter() if downloading else contextlib.nullcontext():
            results = work(password=password, recursive=not args.no_recursive, copy=args.copy)
    except CommandError as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        data = runner.get_json([r for r in results if r.name in ("dicom:get", "dicom:rs", "image:get")])
        if args.command == "open":
            data["commands"] = [result.to_json() for result in results]
        json.dump(data, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    elif args.command == "get":
        print(results[0].summary())
    else:
        for result in results:
            print(f"${result.name}: " + result.summary().replace("\n", "\n  "))
    status = _status(results)
    if any(isinstance(f, PasswordError) for result in results for f in result.failures):
        print(f"{prefix}: an archive is encrypted: give its password with --password-file FILE "
              "(or check it)", file=sys.stderr)
    for failure in (f for result in results for f in result.failures if not isinstance(f, PasswordError)):
        print(f"{prefix}: {failure}", file=sys.stderr)
    return status


def _get(args: argparse.Namespace) -> int:
    command = DicomGet(local=tuple(args.local), remote=tuple(args.remote), wado=tuple(args.wado),
                       zip=tuple(args.zip), iwado=tuple(args.iwado), portable=args.portable)
    if not (command.local or command.remote or command.wado or command.zip or command.iwado or command.portable):
        print("dicomnb get: nothing to import: give -l PATH, -z ZIP, -r URL, -w MANIFEST, -i DATA or -p",
              file=sys.stderr)
        return EXIT_USAGE
    missing = [p for p in [*args.local, *args.zip] if not _is_url(p) and not os.path.exists(runner.local_path(p))]
    if missing:
        print(f"dicomnb get: no such file or folder: {missing[0]}", file=sys.stderr)
        return EXIT_USAGE
    return _run_commands(args, "dicomnb get", lambda **options: [runner.run_command(command, **options)],
                         downloading=bool(command.remote or command.wado or command.iwado))


def _open(args: argparse.Namespace) -> int:
    try:
        commands = parse_commands(args.uri)  # the whole text first: nothing runs if it cannot be parsed
    except CommandError as exc:
        print(f"dicomnb open: {exc}", file=sys.stderr)
        return EXIT_USAGE
    downloading = any(isinstance(c, DicomRs) or (isinstance(c, DicomGet) and (c.remote or c.wado or c.iwado))
                      for c in commands)
    return _run_commands(args, "dicomnb open", lambda **options: [runner.run_command(c, **options) for c in commands],
                         downloading=downloading)


def _is_url(value: str) -> bool:
    return value.strip().lower().startswith(("http://", "https://"))


def _node(args: argparse.Namespace) -> int:
    if args.node_command == "add":
        for option in ("tls_ca", "tls_cert", "tls_key"):
            path = getattr(args, option)
            if path is not None and not os.path.isfile(path):
                print(f"dicomnb node add: --{option.replace('_', '-')}: no such file: {path}", file=sys.stderr)
                return EXIT_USAGE
        missing = [f"--{o}" for o in ("aet", "host", "port") if getattr(args, o) is None]
        if args.dicomweb is None and missing:
            print(f"dicomnb node add: {', '.join(missing)} required (or --dicomweb URL for a DICOMweb node)",
                  file=sys.stderr)
            return EXIT_USAGE
        headers = {}
        for header in args.headers or []:
            name, colon, value = header.partition(":")
            if not colon:
                print(f"dicomnb node add: --header {header!r}: write it as 'Name: value'", file=sys.stderr)
                return EXIT_USAGE
            headers[name.strip()] = value.strip()
        node = network.add_node(args.name, args.aet, args.host, args.port, wado_url=args.wado_url,
                                tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
                                dicomweb=args.dicomweb, qido_url=args.qido_url, wado_rs_url=args.wado_rs_url,
                                headers=headers or None, auth=args.auth, user=args.user,
                                secret_env=args.secret_env, replace=args.replace)
        print(f"added {node.name}: {node.describe()}")
    elif args.node_command == "list":
        found = network.nodes()
        if args.json:
            json.dump({"nodes": [n.to_json() for n in found]}, sys.stdout, ensure_ascii=False)
            sys.stdout.write("\n")
        elif not found:
            print("no nodes: add one with 'dicomnb node add NAME --aet AET --host HOST --port PORT' "
                  "or 'dicomnb node add NAME --dicomweb URL'")
        for n in [] if args.json else found:
            wado = f" WADO {n.wado_url}" if isinstance(n, DicomNode) and n.wado_url else ""
            print(f"{n.name}\t{n.describe()}{wado}")
    elif args.node_command == "remove":
        network.remove_node(args.name)
        print(f"removed {args.name}")
    return EXIT_OK


def _echo(args: argparse.Namespace) -> int:
    seconds = network.echo(args.name, timeout=args.timeout)
    kind = "QIDO-RS" if isinstance(network.get_node(args.name), DicomWebNode) else "C-ECHO"
    print(f"{args.name}: {kind} ok in {seconds * 1000:.0f} ms")
    return EXIT_OK


def _table(result: QueryResult) -> str:
    """The rows as an aligned text table (long cells cut), one line per match."""
    columns = _TABLE[result.level]
    cells = [[_SHORT.get(c, c) for c in columns]]
    for row in result.rows:
        line = []
        for column in columns:
            value = row.get(column)
            text = "\\".join(map(str, value)) if isinstance(value, list) else "" if value is None else str(value)
            limit = 64 if column.endswith("UID") else 30
            line.append(text if len(text) <= limit else text[:limit - 1] + "…")
        cells.append(line)
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in cells)


def _query(args: argparse.Namespace) -> int:
    fields: dict[str, object] = {field: getattr(args, field) for _, field, _ in _TEXT_OPTIONS
                                 if getattr(args, field)}
    if args.modalities:
        fields["modalities"] = tuple(args.modalities)
    if args.period:
        fields["period"] = args.period
    if args.date:
        fields["date_from"], fields["date_to"] = parse_date_range(args.date)
    result = network.query(args.name, level=args.level, study_uid=args.study, series_uid=args.series,
                           limit=args.limit, page=args.page, preset=args.preset, timeout=args.timeout,
                           **fields)  # type: ignore[arg-type]
    if args.json:
        json.dump(result.to_json(), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        if result.rows:
            print(_table(result))
        print(result.message)
    return EXIT_OK


def _print_retrieved(args: argparse.Namespace, result: RetrieveResult) -> None:
    if args.json:
        json.dump(result.to_json(), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(result.message)
        for sop in result.missing:
            print(f"missing: {sop}")


class _ProgressPrinter:
    """Download progress on standard error: a bar redrawn in place on a terminal (at most ~10
    times a second), else one line per series as it ends."""

    WIDTH = 30

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self.ended: dict[str, str] = {}
        self.drawn = False

    def __enter__(self) -> _ProgressPrinter:
        # what had ended before this command is not its progress (a store keeps earlier jobs)
        self.before = {job.id for job in retrieving.downloads.status().jobs if job.state == "complete"}
        self.unsubscribe = retrieving.downloads.subscribe(self.update)
        return self

    def __exit__(self, *exc: object) -> None:
        self.unsubscribe()
        self.update(retrieving.downloads.status())
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()

    def update(self, progress: DownloadProgress) -> None:
        progress = DownloadProgress(tuple(job for job in progress.jobs if job.id not in self.before))
        for job in progress.jobs:
            if job.state in ("complete", "incomplete", "paused") and self.ended.get(job.id) != job.state:
                self.ended[job.id] = job.state
                if not self.terminal:
                    self.stream.write(f"{job.id} {job.description}: {job.text}\n")
            elif job.state in ("running", "queued"):
                self.ended.pop(job.id, None)
        if self.terminal and progress.total:
            filled = int(self.WIDTH * progress.done / progress.total)
            line = (f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {progress.done}/{progress.total} instances, "
                    f"{sum(j.state == 'running' for j in progress.jobs)} series running")
            if progress.rate:
                line += f", {progress.rate / 1e6:.1f} MB/s"
            if progress.eta is not None:
                line += f", {progress.eta:.0f} s left"
            self.stream.write(line.ljust(100))
            self.drawn = True
        self.stream.flush()


def _retrieve(args: argparse.Namespace) -> int:
    if args.dest is not None and os.path.exists(args.dest) and not os.path.isdir(args.dest):
        print(f"dicomnb retrieve: --dest: {args.dest} is not a folder", file=sys.stderr)
        return EXIT_USAGE
    try:
        with _ProgressPrinter():
            result = retrieving.retrieve(args.name, args.study, args.series, method=args.method, dest=args.dest)
    except RetrieveIncomplete as exc:
        _print_retrieved(args, exc.result)
        print(f"dicomnb retrieve: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    _print_retrieved(args, result)
    return EXIT_OK


def _print_jobs(args: argparse.Namespace, statuses: Sequence[JobStatus]) -> None:
    if getattr(args, "json", False):
        json.dump({"jobs": [status.to_json() for status in statuses]}, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return
    if not statuses:
        print("no downloads")
        return
    rows = [("ID", "STATE", "DONE", "MISSING", "NODE", "METHOD", "SERIES")]
    rows += [(s.id, s.state, f"{s.done}/{s.total}", str(s.missing), s.node, s.method, s.description)
             for s in statuses]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    for s in statuses:
        if s.error and s.state != "complete":
            print(f"{s.id}: {s.error}")


def _downloads(args: argparse.Namespace) -> int:
    manager = retrieving.downloads
    command = args.downloads_command
    if command is None:
        _print_jobs(args, manager())
        return EXIT_OK
    if command == "cancel":
        for job in manager.cancel(args.ids):
            print(f"cancelled {job.id} ({job.description}); {job.done} instances stay in the store")
        return EXIT_OK
    if command == "clear":
        print(f"forgot {len(manager.clear())} complete jobs")
        return EXIT_OK
    ids = args.ids or None
    chosen = (manager.resume if command == "resume" else manager.retry_missing)(ids)
    if not chosen:
        print("nothing to " + ("resume" if command == "resume" else "retry"), file=sys.stderr)
    with _ProgressPrinter():
        manager.wait(chosen)
    statuses = [job.status() for job in chosen]
    _print_jobs(args, statuses)
    return EXIT_OK if all(s.state == "complete" for s in statuses) else EXIT_INCOMPLETE


def _demo(args: argparse.Namespace) -> int:
    from dicomnb import demo

    return demo.run(port=args.port, load=not args.empty)


def main(args: Sequence[str] | None = None) -> int:
    """Run the command line with ``args`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = _setup_argparser()
    namespace = parser.parse_args(args)
    if namespace.command == "get":
        return _get(namespace)
    if namespace.command == "open":
        return _open(namespace)
    commands = {"node": _node, "echo": _echo, "query": _query, "retrieve": _retrieve, "downloads": _downloads,
                "demo": _demo}
    if namespace.command in commands:
        sub = getattr(namespace, "node_command", None) or getattr(namespace, "downloads_command", None) or ""
        prefix = " ".join(["dicomnb", namespace.command, sub]).strip()
        try:
            return commands[namespace.command](namespace)
        except DependencyMissing as exc:
            print(f"{prefix}: {exc}", file=sys.stderr)
            return EXIT_DEPENDENCY
        except AuthenticationFailed as exc:
            print(f"{prefix}: {exc}", file=sys.stderr)
            return EXIT_PASSWORD
        except SourceError as exc:
            print(f"{prefix}: {exc}", file=sys.stderr)
            return EXIT_NETWORK
        except (InputError, DownloadError) as exc:
            print(f"{prefix}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    parser.error(f"unknown command {namespace.command}")  # pragma: no cover
    return EXIT_USAGE  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
