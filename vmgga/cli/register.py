"""``vmgga register FIXED MOVING -o OUT``: one pair, files in, transform and images out."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

# Light imports only: the parser (and `vmgga register --help`) must not load torch.
from vmgga.config import FeatureBackend, MatcherName, Modality, Preset, make_config
from vmgga.errors import VmggaError

HELP = "register a moving image to a fixed image (NIfTI/NRRD/MHA files or DICOM series folders)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``vmgga register``."""
    parser.add_argument("fixed", help="fixed image file or DICOM series folder")
    parser.add_argument("moving", help="moving image file or DICOM series folder")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--preset", default="fast", choices=[p.value for p in Preset])
    parser.add_argument("--fixed-modality", default="auto", choices=[m.value for m in Modality])
    parser.add_argument("--moving-modality", default="auto", choices=[m.value for m in Modality])
    parser.add_argument(
        "--ct-window",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="CT values mapped to 0..1 (default: -1000 1500 HU); for a CT not in HU, give its own "
        "units from air to dense bone, with --fixed-modality/--moving-modality ct",
    )
    parser.add_argument(
        "--half-turn-search",
        action="store_true",
        help="also try the affine stage from half turns (180 degrees) about each axis and keep the best "
        "MI: for a scan turned upside down or round; 4x the affine stage's time",
    )
    parser.add_argument(
        "--features",
        default=None,
        choices=[f.value for f in FeatureBackend],
        help="feature backend of the dense stage (default: the preset's)",
    )
    parser.add_argument(
        "--matcher",
        default=None,
        choices=[m.value for m in MatcherName],
        help="dense matcher: cost_volume (training-free), vmgga (learned), fused (both); default: the preset's",
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="matcher network checkpoint (--matcher vmgga/fused, --features vmgga/mind+vmgga); default: shipped",
    )
    parser.add_argument("--dinov2-path", default=None, help="local DINOv2 model folder (features=dinov2)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--initial-transform", default=None, help="linear ITK transform (fixed -> moving) to start from"
    )
    parser.add_argument(
        "--fixed-series", default=None, help="SeriesInstanceUID to use in a multi-series fixed folder"
    )
    parser.add_argument(
        "--moving-series", default=None, help="SeriesInstanceUID to use in a multi-series moving folder"
    )
    parser.add_argument(
        "--fixed-volume-index", type=int, default=None, help="volume to use when the fixed image is 4D"
    )
    parser.add_argument(
        "--moving-volume-index", type=int, default=None, help="volume to use when the moving image is 4D"
    )
    parser.add_argument(
        "--volume-index",
        type=int,
        default=None,
        help="deprecated: the volume to use from every 4D input (3D inputs ignore it); "
        "prefer --fixed-volume-index / --moving-volume-index",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--max-memory", type=float, default=None, help="memory cap of the dense stage in GB")
    parser.add_argument("--qc", action="store_true", help="also write the QC page qc.html")
    parser.add_argument(
        "--include-phi", action="store_true", help="keep DICOM patient identifiers in the report"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.add_argument(
        "--progress-json", action="store_true", help="JSON-lines progress on stdout (for GUIs)"
    )


def config_from_args(args: argparse.Namespace):
    """The :class:`~vmgga.config.RegistrationConfig` the arguments ask for."""
    overrides = {
        "preprocess.fixed_modality": args.fixed_modality,
        "preprocess.moving_modality": args.moving_modality,
        "device": args.device,
        "seed": args.seed,
        "num_threads": args.threads,
        "max_memory_gb": args.max_memory,
    }
    optional = {
        "dense.features.backend": args.features,
        "dense.matching.matcher": args.matcher,
        "dense.features.weights": args.weights,
        "dense.features.dinov2_path": args.dinov2_path,
        "preprocess.ct_window_hu": tuple(args.ct_window) if args.ct_window else None,
        "affine.half_turn_search": True if args.half_turn_search else None,
    }
    overrides.update({k: v for k, v in optional.items() if v is not None})
    return make_config(args.preset, **overrides)


def run(args: argparse.Namespace) -> int:
    """Register, write the outputs atomically under a folder lock; returns the exit status."""
    from vmgga.progress import JsonLinesProgress

    json_progress = JsonLinesProgress() if args.progress_json else None
    try:
        paths = _register_and_write(args, json_progress)
    except VmggaError as error:
        if json_progress is not None:
            json_progress.emit({"event": "error", "message": str(error)})
        raise
    if json_progress is not None:
        json_progress.emit({"event": "done", "outputs": {k: str(v) for k, v in paths.items()}})
    elif not args.quiet:
        print(json.dumps({k: str(v) for k, v in paths.items()}, indent=1), file=sys.stderr)
    return 0


def _register_and_write(args: argparse.Namespace, json_progress) -> dict[str, Path]:
    """The work of :func:`run`, with SIGTERM turned into a clean interrupt."""
    from vmgga.io.paths import check_not_an_input

    config = config_from_args(args)  # argument errors come before the heavy imports
    _require_extras(config)
    output = Path(args.output).resolve()
    check_not_an_input(_planned_outputs(output), [args.fixed, args.moving])
    from vmgga.api import register, write_outputs
    from vmgga.io.atomic import OutputFolderLock, remove_stale_partials
    from vmgga.progress import TqdmProgress, silent

    progress = json_progress or (silent if args.quiet else TqdmProgress())
    created = not output.exists()
    _check_before_work(config, args.output)
    output.mkdir(parents=True, exist_ok=True)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with OutputFolderLock(output):
            remove_stale_partials(output)
            result = register(
                args.fixed,
                args.moving,
                config,
                initial_transform=args.initial_transform,
                progress=progress,
                fixed_series=args.fixed_series,
                moving_series=args.moving_series,
                volume_index=args.volume_index,
                fixed_volume_index=args.fixed_volume_index,
                moving_volume_index=args.moving_volume_index,
                include_phi=args.include_phi,
            )
            warn_if_suspect(result.report, json_progress)
            return _write_quietly(lambda: write_outputs(result, output, qc=args.qc), output)
    except BaseException:
        if created and output.is_dir() and not any(output.iterdir()):
            output.rmdir()  # a failed run leaves no empty folder behind
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        if hasattr(progress, "close"):
            progress.close()


def _require_extras(config) -> None:
    """A backend whose extra is not installed fails here, before any file is read or written."""
    from vmgga.extras import require_extra

    if config.dense.features.backend == FeatureBackend.DINOV2.value:
        require_extra("dinov2", feature="--features dinov2")


def _planned_outputs(output: Path) -> list[Path]:
    """Every file a run may write into ``output`` (checked against the inputs before any work)."""
    from vmgga.export.outputs import OUTPUT_FILES, QC_FILE

    return [output, *(output / name for name in (*OUTPUT_FILES.values(), QC_FILE))]


def _raise_interrupt(signum, frame) -> None:
    """SIGTERM behaves like Ctrl-C: unwind, leaving only complete outputs.

    Inside a Python callback called by SimpleITK (the affine stage's progress), an exception would
    be printed by SimpleITK and turned into a RuntimeError; there the signal is sent again a moment
    later, until it arrives outside SimpleITK.
    """
    if _inside_simpleitk(frame):
        import threading

        main_thread = threading.main_thread().ident  # where Python runs signal handlers
        timer = threading.Timer(_SIGNAL_RETRY_S, signal.pthread_kill, args=(main_thread, signum))
        timer.daemon = True
        timer.start()
        return
    raise KeyboardInterrupt


_SIGNAL_RETRY_S = 0.2  # seconds between re-sent SIGTERMs while SimpleITK runs a callback


def _inside_simpleitk(frame) -> bool:
    """Whether a frame of the SimpleITK wrapper is on the stack of ``frame`` (a C++ callback)."""
    while frame is not None:
        if "SimpleITK" in Path(frame.f_code.co_filename).parts:
            return True
        frame = frame.f_back
    return False


def _check_before_work(config, output: str) -> None:
    """The device and the output folder are usable (one-line errors before any image is read)."""
    from vmgga.cli.checks import check_device, check_output_folder

    check_device(config.device)
    check_output_folder(output)


def _write_quietly(write, output: Path) -> dict[str, Path]:
    """``write()`` with the libraries' own error text (HDF5 diagnostics) kept off the terminal; a
    failure inside a C++ writer (a full disk...) becomes one line."""
    from vmgga.cli.checks import library_write_failure
    from vmgga.io.capture import library_output

    with library_output("writing the outputs") as captured:
        try:
            return write()
        except RuntimeError as error:
            failure = error
    raise library_write_failure(failure, captured.text, output) from failure


def warn_if_suspect(report: dict, json_progress=None) -> None:
    """Print a warning (and a JSON ``warning`` event) when the result looks failed or implausible."""
    if report.get("status") != "suspect":
        return
    reasons = "; ".join(report.get("suspect_reasons") or [])
    message = f"the result is suspect, check it before use: {reasons}"
    if json_progress is not None:
        json_progress.emit({"event": "warning", "message": message})
    print(f"vmgga register: warning: {message}", file=sys.stderr)
