"""Command-line interface: thin commands over the public API and run.py.

Every command returns an exit code: 0 on success, 2 on bad input (one line on
stderr naming the problem and the fix, no traceback, nothing written).
"""

from __future__ import annotations

import argparse
import logging
import sys

import numpy as np

from . import __version__

log = logging.getLogger("chunkseg")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit code 2."""

    def error(self, message):  # noqa: D102
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


def _channel(value: str):
    return int(value) if value.lstrip("-").isdigit() else value


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors")


def _add_image_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--level", type=int, default=0, help="resolution level (default 0)")
    p.add_argument("--channel", type=_channel, default=None, help="channel index or name")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chunkseg", description="Segment images larger than memory, chunk by chunk.")
    parser.add_argument("--version", action="version", version=f"chunkseg {__version__}")
    _add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("info", help="shape, dtype, chunks, levels and channels of an image")
    p.add_argument("path", metavar="PATH")
    _add_common(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("threshold", help="print a global threshold, as scikit-image computes it")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--method", default="otsu", help="otsu, li, yen, isodata, minimum, triangle, "
                   "mean or multiotsu (default otsu)")
    p.add_argument("--classes", type=int, default=3, help="classes for multiotsu (default 3)")
    _add_image_options(p)
    _add_common(p)
    p.set_defaults(func=cmd_threshold)
    return parser


def cmd_info(args) -> int:
    from .io import inspect_image

    print(inspect_image(args.path).summary())
    return 0


def _format_number(value) -> str:
    arr = np.asarray(value)
    if arr.ndim:
        return " ".join(_format_number(v) for v in arr)
    return repr(arr.item())


def cmd_threshold(args) -> int:
    from .io import open_image
    from .threshold import METHODS, threshold

    if args.method not in METHODS:
        raise ValueError(f"unknown threshold method {args.method!r}; choose one of {', '.join(METHODS)}")
    kwargs = {"classes": args.classes} if args.method == "multiotsu" else {}
    image = open_image(args.path, level=args.level, channel=args.channel)
    print(_format_number(threshold(image, args.method, **kwargs)))
    return 0


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else
                                         logging.INFO if verbose == 1 else logging.WARNING)
    logging.basicConfig(level=level, format="chunkseg: %(levelname)s: %(message)s", force=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"{exc} (see --help)", file=sys.stderr)
        return 2
    _configure_logging(args.verbose, args.quiet)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        print(f"chunkseg: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("chunkseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
