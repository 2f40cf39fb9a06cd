"""``vmgga batch MANIFEST -o OUT``: many registrations, resumable, fault-isolated, parallel."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vmgga.config import Preset

#: Default of --connect-timeout (seconds); equals vmgga.batch.executors.DEFAULT_CONNECT_TIMEOUT_S,
#: written here so that building the parser imports nothing heavy.
DEFAULT_CONNECT_TIMEOUT_S = 10.0

HELP = (
    "register every case of a CSV/JSON manifest into OUT/<case_id>/ (resumable: complete cases are "
    "skipped); exit status 0 when all cases are complete, 1 when any case failed, 2 for a bad manifest"
)

EPILOG = """\
manifest (CSV columns or JSON keys): case_id, fixed, moving, and optionally fixed_modality,
moving_modality (auto|ct|mr), fixed_labels, moving_labels (label maps: warped, scored with Dice).
JSON may also hold "subjects" (longitudinal: baseline + followups, "chain": true to register each
follow-up to its predecessor and compose) and "config" (overrides, e.g. {"dense.instance.iterations": 40}).
Relative paths are relative to the manifest's folder.

outputs: OUT/<case_id>/ as written by 'vmgga register' plus warped_labels.nii.gz, qc.html and
done.json (written last); OUT/summary.csv, OUT/summary.json, OUT/index.html.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``vmgga batch``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("manifest", help="CSV or JSON manifest of the cases")
    parser.add_argument("-o", "--output", required=True, help="output folder OUT")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    parser.add_argument(
        "--scheduler", default=None, help="Dask distributed scheduler address (e.g. tcp://host:8786)"
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"how long to wait for the --scheduler to answer (default {DEFAULT_CONNECT_TIMEOUT_S:g} s)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="threads per worker (default: cores/workers)"
    )
    parser.add_argument("--force", action="store_true", help="recompute cases that are already complete")
    parser.add_argument("--preset", default="fast", choices=[p.value for p in Preset])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="config override, e.g. --set dense.instance.iterations=40 (repeatable)")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_overrides(items: list[str]) -> dict:
    """``["dense.instance.iterations=40", "device=\"cuda\""]`` -> overrides (values parsed as JSON, else text)."""
    from vmgga.errors import ConfigError

    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key.strip()] = json.loads(text)
        except ValueError:
            overrides[key.strip()] = text
    return overrides


def run(args: argparse.Namespace) -> int:
    """Run the batch; print the counts; 0 if every case is complete, 1 if any failed."""
    from vmgga.extras import require_extra

    if args.scheduler:
        require_extra("dask", feature="--scheduler")  # before the output folder is created
    from vmgga.batch.runner import BatchOptions, run_batch, summary_line

    overrides = parse_overrides(args.set)
    manifest = _checked_manifest(args, overrides)
    options = BatchOptions(
        output_dir=Path(args.output),
        workers=args.workers,
        scheduler=args.scheduler,
        connect_timeout_s=args.connect_timeout,
        force=args.force,
        preset=args.preset,
        threads=args.threads,
        quiet=args.quiet,
        config_overrides=overrides,
    )
    summary = run_batch(manifest, options)
    full = [o.case_id for o in summary.outcomes if o.disk_full]
    if full:  # not a problem of the cases: one line, exit 2, the same command resumes later
        print(
            f"vmgga batch: error: no space left on the device for '{summary.output_dir}': "
            f"{len(full)} case(s) could not be written ({', '.join(full[:3])}{'...' if len(full) > 3 else ''}); "
            "complete cases are kept; free some space and run the same command again",
            file=sys.stderr,
        )
        return 2
    print(summary_line(summary.counts, summary.output_dir), file=sys.stderr)
    for outcome in summary.outcomes:
        if outcome.error:
            print(f"  {outcome.case_id}: {outcome.error}", file=sys.stderr)
        elif (outcome.metrics or {}).get("result_status") == "suspect":
            reasons = "; ".join(outcome.metrics.get("suspect_reasons") or [])
            print(
                f"  {outcome.case_id}: warning: suspect result, check it before use: {reasons}",
                file=sys.stderr,
            )
    return summary.exit_status


def _checked_manifest(args: argparse.Namespace, overrides: dict):
    """The manifest, once it, the device and the output folder are known to be usable (before any work)."""
    from vmgga.batch.manifest import read_manifest
    from vmgga.cli.checks import check_device, check_output_folder

    manifest = read_manifest(args.manifest)
    check_device(str({**manifest.config_overrides, **overrides}.get("device", "cpu")), "device")
    check_output_folder(args.output)
    return manifest
