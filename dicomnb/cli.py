"""The command line: the same verbs as the Python API.

    dicomnb get -l PATH [-l PATH ...] [-z ZIP ...] [--password-file FILE]
                [--no-recursive] [--copy] [--json]

Exit status: 0 when the command ran (even if some files could not be imported: they are
reported), 2 for unusable arguments, 3 when an archive needs a password or the password
given is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from dicomnb import api
from dicomnb.core.errors import DicomnbError, InputError, PasswordError
from dicomnb.core.model import ErrorRecord
from dicomnb.core.report import ImportReport

__all__ = ["main"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_PASSWORD = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _setup_argparser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dicomnb", description="Import DICOM data into a catalog, as in a notebook.")
    parser.add_argument("--version", action="version", version=f"dicomnb {api_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    get = commands.add_parser(
        "get", help="import local files/folders, DICOM ZIPs and DICOMDIR media",
        description="Import local files and folders (recursively), DICOM ZIP archives and "
        "DICOMDIR media, then print a summary (or JSON with --json).",
    )
    get.add_argument("-l", "--local", metavar="PATH", action="append", default=[],
                     help="a file or folder (a ZIP file or a folder holding a DICOMDIR is "
                     "imported as such); repeatable")
    get.add_argument("-z", "--zip", metavar="ZIP", action="append", default=[],
                     help="a DICOM ZIP archive; repeatable")
    get.add_argument("--password-file", metavar="FILE",
                     help="a file whose first line is the password of encrypted archives")
    get.add_argument("--no-recursive", action="store_true", help="do not search sub-folders")
    get.add_argument("--copy", action="store_true",
                     help="copy DICOMDIR media into a local temporary folder first")
    get.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


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


def _get(args: argparse.Namespace) -> int:
    if not args.local and not args.zip:
        print("dicomnb get: nothing to import: give -l PATH or -z ZIP", file=sys.stderr)
        return EXIT_USAGE
    try:
        password = _read_password(args.password_file)
    except InputError as exc:
        print(f"dicomnb get: {exc}", file=sys.stderr)
        return EXIT_USAGE
    missing = [p for p in [*args.local, *args.zip] if not os.path.exists(p)]
    if missing:
        print(f"dicomnb get: no such file or folder: {missing[0]}", file=sys.stderr)
        return EXIT_USAGE
    status = EXIT_OK
    report = ImportReport()
    jobs = [(path, False) for path in args.local] + [(path, True) for path in args.zip]
    for path, is_zip in jobs:
        try:
            if is_zip:
                sub = api.import_zip(path, password=password)
            else:
                sub = api.import_local(path, recursive=not args.no_recursive, password=password,
                                       copy=args.copy)
        except PasswordError as exc:
            status = EXIT_PASSWORD
            sub = ImportReport(errors=[ErrorRecord.from_exception(os.path.abspath(path), exc,
                                                                  source="zip", origin=path)])
        except DicomnbError as exc:  # a whole source refused (zip bomb, unreadable DICOMDIR)
            sub = ImportReport(errors=[ErrorRecord.from_exception(os.path.abspath(path), exc,
                                                                  origin=path)])
        report.merge(sub)
    if args.json:
        json.dump(report.to_json(), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(report.summary())
    if status == EXIT_PASSWORD:
        print("dicomnb get: an archive is encrypted: give its password with --password-file FILE "
              "(or check it)", file=sys.stderr)
    return status


def main(args: Sequence[str] | None = None) -> int:
    """Run the command line with ``args`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = _setup_argparser()
    namespace = parser.parse_args(args)
    if namespace.command == "get":
        return _get(namespace)
    parser.error(f"unknown command {namespace.command}")  # pragma: no cover
    return EXIT_USAGE  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
