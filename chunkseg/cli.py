"""Command-line interface: thin commands over the public API and run.py.

Every command returns an exit code: 0 on success; 2 on bad input (one line on
stderr naming the problem and the fix, no traceback, nothing written); 1 when
a run fails on the way (a damaged input chunk, a halo the objects outgrow),
and 1 with "internal error" for anything else (a bug: the traceback with -v).
Library messages name Python parameters in backticks (```min_size```); the
CLI shows each as its flag (``--min-size``), from one table built from the
parser (:func:`_flag_table`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import sys
import traceback
import warnings

import numpy as np

from . import __version__
from ._validate import ChunkReadError, ChunkWriteError, HaloTooSmallError, InputError
from .io import store

log = logging.getLogger("chunkseg")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit code 2."""

    def error(self, message):  # noqa: D102
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


def _channel(value: str):
    return int(value) if value.lstrip("-").isdigit() else value


def _add_common(p: argparse.ArgumentParser, top: bool = False) -> None:
    # subcommands leave the value alone unless given, so `chunkseg -v CMD` works too
    default = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("-v", "--verbose", action="count", help="more log output (-vv: also dask's)",
                   **({"default": 0} if top else default))
    p.add_argument("-q", "--quiet", action="store_true", help="only errors", **default)
    p.add_argument("--storage-options", metavar="JSON", help="options of the object store "
                   "client (fsspec), e.g. '{\"endpoint_url\": \"http://127.0.0.1:9000\"}'",
                   **({"default": None} if top else default))
    p.add_argument("--anon", action="store_true", help="read public buckets without credentials",
                   **({"default": False} if top else default))


def _add_image_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--level", type=int, default=0, help="resolution level (default 0)")
    p.add_argument("--channel", type=_channel, default=None, help="channel index or name")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chunkseg", description="Segment images larger than memory, chunk by chunk.")
    parser.add_argument("--version", action="version", version=f"chunkseg {__version__}")
    _add_common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("info", help="shape, dtype, chunks, levels and channels of an image")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--level", type=int, default=0, help="resolution level (default 0)")
    _add_common(p)
    p.set_defaults(func=cmd_info, parser=p)

    p = sub.add_parser("threshold", help="print a global threshold, as scikit-image computes it")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--method", default="otsu", help="otsu, li, yen, isodata, minimum, triangle, "
                   "mean or multiotsu (default otsu)")
    p.add_argument("--classes", type=int, default=3, help="classes for multiotsu (default 3)")
    _add_image_options(p)
    _add_common(p)
    p.set_defaults(func=cmd_threshold, parser=p)

    p = sub.add_parser("segment", help="segment nuclei into an OME-Zarr label image")
    p.add_argument("input", metavar="INPUT",
                   help="the image; or a quoted glob ('t*.tif') of one file per time point, "
                        "with --time")
    p.add_argument("output", metavar="OUTPUT", nargs="?", default=None)
    p.add_argument("--into-input", default=None, metavar="NAME",
                   help="write the labels into the OME-Zarr INPUT as labels/NAME (no OUTPUT)")
    _add_segment_options(p)
    _add_image_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    _add_common(p)
    p.set_defaults(func=cmd_segment, parser=p)

    p = sub.add_parser("cells", help="grow cells from nuclei (a seeded watershed or label "
                       "expansion) into OME-Zarr labels cells and cytoplasm, with a table")
    p.add_argument("nuclei", metavar="NUCLEI", help="the nuclei: a chunkseg label output or any "
                   "integer label image of IMAGE's shape")
    p.add_argument("image", metavar="IMAGE", help="the image the cells are found in")
    p.add_argument("output", metavar="OUTPUT", nargs="?", default=None,
                   help="a new OME-Zarr labels group: OUTPUT/cells and OUTPUT/cytoplasm")
    p.add_argument("--into-input", action="store_true",
                   help="write labels/cells and labels/cytoplasm into the OME-Zarr IMAGE")
    p.add_argument("--method", default="watershed",
                   help="watershed (flood the elevation from the nuclei; default) or expand "
                        "(grow every nucleus by --distance pixels)")
    p.add_argument("--elevation", default="inverted",
                   help="what the watershed floods: image (a membrane stain), inverted (a "
                        "cytoplasm stain; default) or sobel (the gradient magnitude)")
    p.add_argument("--distance", type=float, default=10.0,
                   help="pixels each nucleus grows by, for --method expand (default 10)")
    p.add_argument("--threshold", type=_threshold, default="otsu",
                   help="the cell mask: image > this global threshold (otsu, li, ..., a value) "
                        "united with the nuclei, or none (default otsu)")
    p.add_argument("--connectivity", type=int, default=1, help="1 (faces) .. ndim (default 1)")
    p.add_argument("--halo", type=_halo, default="auto",
                   help="pixels of its neighbours a chunk floods with first (default auto: 32)")
    p.add_argument("--max-halo", type=int, default=None,
                   help="the most a chunk may need, tried by doubling (default 128)")
    p.add_argument("--table", default=None, metavar="CELLS.csv|.parquet",
                   help="one row per nucleus: nucleus_*, cell_* and cytoplasm_* columns")
    _add_run_options(p, report="OUTPUT/cells.report.json")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    _add_image_options(p)
    _add_common(p)
    p.set_defaults(func=cmd_cells, parser=p)

    p = sub.add_parser("measure", help="measure every object of a label store into a table "
                       "(CSV or Parquet, scikit-image's regionprops column names)")
    p.add_argument("labels", metavar="LABELS")
    p.add_argument("output", metavar="OUT", help="objects.csv or objects.parquet")
    p.add_argument("--image", default=None, metavar="IMAGE", help="intensities to measure")
    p.add_argument("--properties", default=None, metavar="P1,P2,...",
                   help="regionprops names (default: label, area, centroid, bbox and, with "
                        "--image, intensity_mean/min/max/std)")
    p.add_argument("--spacing", type=_spacing, default=None, metavar="Z,Y,X",
                   help="pixel spacing: physical area and centroids")
    p.add_argument("--scheduler", default="threads", help="threads, processes or an address")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    _add_image_options(p)
    _add_common(p)
    p.set_defaults(func=cmd_measure, parser=p)

    p = sub.add_parser("preview", help="a downsampled PNG of a label output (random colours "
                       "over the grey image)")
    p.add_argument("labels", metavar="LABELS")
    p.add_argument("output", metavar="OUT.png")
    p.add_argument("--image", default=None, metavar="IMAGE", help="grey background")
    p.add_argument("--channel", type=_channel, default=None, help="channel of IMAGE")
    p.add_argument("--max-size", type=int, default=2048, help="largest side in pixels (default 2048)")
    p.add_argument("--z", type=int, default=None, help="plane of a 3D stack (default: the middle)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.png if it exists")
    _add_common(p)
    p.set_defaults(func=cmd_preview, parser=p)

    p = sub.add_parser("compare", help="count (and optionally write) where two masks or class maps differ")
    p.add_argument("a", metavar="MASK_A")
    p.add_argument("b", metavar="MASK_B")
    p.add_argument("--out", default=None, metavar="DIFF", help="write the disagreement as a uint8 mask")
    p.add_argument("--overwrite", action="store_true", help="replace DIFF if it exists")
    _add_common(p)
    p.set_defaults(func=cmd_compare, parser=p)

    p = sub.add_parser("demo", help="segment a bundled real nuclei mosaic (CC0) and print the summary")
    p.add_argument("directory", metavar="DIR", nargs="?", default="chunkseg-demo",
                   help="where to write the mosaic and its labels (default ./chunkseg-demo)")
    p.add_argument("--scheduler", default="threads", help="threads, processes or an address")
    p.add_argument("--workers", type=int, default=None)
    _add_common(p)
    p.set_defaults(func=cmd_demo, parser=p)
    return parser


def _halo(value: str):
    return value if value == "auto" else int(value)


def _threshold(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def _spacing(value: str):
    if value == "auto":
        return value
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--spacing must be numbers like 2,0.65,0.65, got {value!r}") from None


def _add_run_options(p, *, report: str) -> None:
    """The options of the runs that write label images: chunks, where they compute, the
    progress bar and the run report (default path ``report``)."""
    p.add_argument("--chunks", default=None, metavar="N|Z,Y,X",
                   help="processing chunks (default: the storage chunks; a 3D watershed "
                        "grows them up to 256^3 while the stack keeps 8 blocks)")
    p.add_argument("--scheduler", default="threads",
                   help="threads (default), processes, or a scheduler address tcp://HOST:PORT")
    p.add_argument("--workers", type=int, default=None, help="threads or worker processes")
    p.add_argument("--threads-per-worker", type=int, default=1,
                   help="threads of each worker process (--scheduler processes; default 1)")
    p.add_argument("--memory-limit", default="auto",
                   help="memory limit of each worker process, e.g. 4GB (default auto: the machine shared "
                        "equally; with a limit the workers start as fresh interpreters, 1 s)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p.add_argument("--report", default=None, metavar="REPORT.json",
                   help=f"where to write the JSON run report (default {report})")
    p.add_argument("--no-report", action="store_true", help="write no run report")


def _add_segment_options(p) -> None:
    p.add_argument("--method", default="watershed", choices=["watershed", "label", "threshold"],
                   help="watershed (default), label (connected components of the mask), or "
                        "threshold (the mask as uint8 0/1; with multiotsu the class map)")
    p.add_argument("--classes", type=int, default=None,
                   help="classes of the class map, with --method threshold --threshold multiotsu")
    p.add_argument("--min-size", type=int, default=0, metavar="PIXELS",
                   help="remove objects smaller than this (whole-object size); ids stay 1..N")
    p.add_argument("--connectivity", type=int, default=1,
                   help="for --method label: 1 (faces) .. ndim (faces, edges, corners)")
    p.add_argument("--threshold", type=_threshold, default="otsu",
                   help="otsu, li, yen, isodata, minimum, triangle, mean, multiotsu, a value, or "
                        "local:BLOCK[:OFFSET[:METHOD]] (default otsu)")
    p.add_argument("--smooth", default=None, metavar="gaussian:SIGMA|median:SIZE",
                   help="filter the image first (a bare number is a Gaussian sigma)")
    p.add_argument("--background", default=None, metavar="gaussian:SIGMA",
                   help="subtract the image's Gaussian blur first (uneven illumination)")
    p.add_argument("--min-distance", type=int, default=10, help="seed spacing (default 10)")
    p.add_argument("--footprint", type=int, default=3, help="local-maximum window side (default 3)")
    p.add_argument("--spacing", type=_spacing, default=None, metavar="Z,Y,X|auto",
                   help="voxel spacing for anisotropic stacks; auto: the input's own physical "
                        "pixel sizes (OME-Zarr scale, OME-TIFF or ImageJ metadata)")
    p.add_argument("--halo", type=_halo, default="auto", help="auto or pixels (default auto)")
    p.add_argument("--objects", dest="polarity", default="bright",
                   help="bright (objects brighter than the background; default) or dark "
                        "(darker: brightfield grey, phase): every threshold follows it")
    p.add_argument("--stain", default=None, metavar="hematoxylin|eosin|dab",
                   help="an RGB brightfield image (H&E, IHC): segment this stain's optical "
                        "density (colour deconvolution, as skimage.color.rgb2hed)")
    p.add_argument("--stain-vectors", default=None, metavar="R,G,B;R,G,B;R,G,B|FILE|macenko",
                   help="the stains' optical-density vectors (default Ruifrok-Johnston), a "
                        ".json/.txt/.npy file of them, or macenko (estimated from the slide)")
    p.add_argument("--tissue", default="none", metavar="auto|none|MASK",
                   help="auto: find the tissue on a low-resolution level and skip the glass "
                        "(its chunks are not read); MASK: a mask image of the input's shape; "
                        "none (default)")
    p.add_argument("--geojson", default=None, metavar="OBJECTS.geojson",
                   help="also write every object as a polygon (a GeoJSON FeatureCollection "
                        "that QuPath imports as detections)")
    _add_run_options(p, report="OUTPUT.report.json")
    p.add_argument("--scheduler-file", default=None, metavar="FILE",
                   help="join the scheduler described by this file (dask-jobqueue, dask-mpi)")
    p.add_argument("--resume", action="store_true",
                   help="finish an interrupted run into OUTPUT: only the chunks not yet written "
                        "are computed (same input and parameters required)")
    p.add_argument("--missing-chunks", default="error", choices=["error", "fill"],
                   help="an input chunk absent from its store stops the run (error, default) or "
                        "reads as the fill value (fill: stores written without empty chunks)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (chunks, halo, tasks, memory per worker); compute nothing")
    p.add_argument("--table", default=None, metavar="OBJECTS.csv|.parquet",
                   help="also measure every object (regionprops names) into this table")
    p.add_argument("--measure-channels", default=None, metavar="all|NAME,...",
                   help="the channels whose intensities go into --table "
                        "(intensity_mean-NAME ...), read in the same pass as the labels")
    p.add_argument("--time", default=None, metavar="all|T|A:B",
                   help="a time series: segment each picked time point on its own, in one run "
                        "(A:B is half-open, as Python's; T alone: that time point, no t axis)")
    p.add_argument("--threshold-scope", default="time", choices=["time", "series"],
                   help="with --time: a threshold per time point (default) or one over all")


def cmd_info(args) -> int:
    from .io import inspect_image

    print(inspect_image(args.path, level=args.level).summary())
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
        raise InputError(f"unknown threshold `method` {args.method!r}; choose one of {', '.join(METHODS)}")
    kwargs = {"classes": args.classes} if args.method == "multiotsu" else {}
    image = open_image(args.path, level=args.level, channel=args.channel)
    print(_format_number(threshold(image, args.method, **kwargs)))
    return 0


def _options(cls, args, **overrides):
    """The options object of a command from its arguments (the parser names are its fields)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in vars(args).items() if k in names}
    if getattr(args, "quiet", False):
        values["progress"] = False
    values.update(overrides)
    return cls(**values)


def cmd_segment(args) -> int:
    from .options import SegmentOptions
    from .run import plan_segment, run_segment

    overrides = {}
    if args.scheduler_file:
        overrides["scheduler"] = f"file:{args.scheduler_file}"
    if args.no_report:
        overrides["report"] = False
    options = _options(SegmentOptions, args, **overrides)
    if args.dry_run:
        print(plan_segment(args.input, args.output, options).summary())
        return 0
    print(run_segment(args.input, args.output, options).summary())
    return 0


def cmd_cells(args) -> int:
    from .options import CellsOptions
    from .run_cells import run_cells

    overrides = {"report": False} if args.no_report else {}
    options = _options(CellsOptions, args, **overrides)
    print(run_cells(args.nuclei, args.image, args.output, options).summary())
    return 0


def cmd_measure(args) -> int:
    from .options import MeasureOptions
    from .run import run_measure

    table = run_measure(args.labels, args.output, _options(MeasureOptions, args))
    print(f"{len(table)} objects, {len(table.columns)} columns -> {args.output}")
    return 0


def cmd_preview(args) -> int:
    from pathlib import Path

    from .preview import preview

    if Path(args.output).exists() and not args.overwrite:
        raise InputError(f"output {args.output} exists; pass `overwrite` to replace it")
    rgb = preview(args.labels, args.output, image=args.image, max_size=args.max_size, z=args.z,
                  channel=args.channel)
    print(f"{rgb.shape[1]}x{rgb.shape[0]} preview -> {args.output}")
    return 0


def cmd_compare(args) -> int:
    from .options import CompareOptions
    from .run import run_compare

    differ, total = run_compare(args.a, args.b, _options(CompareOptions, args))
    print(f"{differ} of {total} pixels differ ({100 * differ / total:.4f}%)"
          + (f" -> {args.out}" if args.out else ""))
    return 0


def cmd_demo(args) -> int:
    from pathlib import Path

    from .run import demo_input, run_segment

    directory = Path(args.directory)
    mosaic = demo_input(directory)
    report = run_segment(mosaic, directory / "labels.zarr", min_distance=7, overwrite=True,
                         scheduler=args.scheduler, workers=args.workers)
    print(f"demo: human mitosis (CC0, Moffat et al. 2006) tiled 2x2 into {mosaic}, "
          f"chunks 256x256")
    print(report.summary())
    return 0


def _configure_logging(verbose: int, quiet: bool) -> None:
    """chunkseg's own messages at -v; distributed's only at -vv."""
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else
                                         logging.INFO if verbose == 1 else logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("chunkseg: %(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    quiet_level = logging.DEBUG if verbose > 1 else logging.CRITICAL
    for name in ("distributed", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(quiet_level)
    if verbose <= 1:  # a failed chunk write is one line; its orphaned requests say nothing more
        from .cluster import ORPHANED_REQUESTS, quiet_logs

        quiet_logs("asyncio", ORPHANED_REQUESTS)



#: Python names whose flag is not the parameter's own name (the rest come from the parser).
_RENAMED = {"sampling": "spacing", "max_label": "min-size"}


def _flag_table(parser: argparse.ArgumentParser) -> dict:
    """Python parameter -> how this command's line spells it (``--min-distance``, ``OUTPUT``)."""
    flags = {}
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs:
            flags.setdefault(action.dest, longs[0])
        elif not action.option_strings and action.dest not in ("help", "command"):
            flags.setdefault(action.dest, action.metavar or action.dest.upper())
    for name, dest in _RENAMED.items():
        if dest in flags:
            flags.setdefault(name, flags[dest])
    if "missing_chunks" not in flags:
        flags["missing_chunks"] = "--missing-chunks (of chunkseg segment)"
    return flags


def _translate(message: str, flags: dict) -> str:
    """A library message with each ```parameter``` shown as this command's flag."""
    return re.sub(r"`([a-z_]+)`", lambda m: flags.get(m[1], f"`{m[1]}`"), message)


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else exc.__class__.__name__


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
    flags = _flag_table(args.parser)
    try:
        with warnings.catch_warnings(record=True) as caught, \
                store.storage_options(store.check_storage_options(args.storage_options),
                                      anon=args.anon):
            warnings.simplefilter("always", UserWarning)
            code = args.func(args)
        for w in caught:
            if issubclass(w.category, UserWarning) and not getattr(args, "quiet", False):
                print(f"chunkseg: warning: {_translate(str(w.message), flags)}", file=sys.stderr)
        return code
    except InputError as exc:  # bad input: found before any work
        print(f"chunkseg: error: {_translate(_one_line(exc), flags)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("chunkseg: interrupted", file=sys.stderr)
        return 130
    except (ChunkReadError, ChunkWriteError, HaloTooSmallError) as exc:  # the run failed on the way, and says why
        print(f"chunkseg: error: {_translate(_one_line(exc), flags)}", file=sys.stderr)
        return 1
    except Exception as exc:  # anything else is chunkseg's fault, not the user's
        if args.verbose:
            traceback.print_exc()
        print(f"chunkseg: internal error: {type(exc).__name__}: {_one_line(exc)} (run with -v "
              "for the traceback, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
