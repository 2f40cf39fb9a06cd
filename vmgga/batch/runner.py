"""``run_batch``: plan the cases of a manifest, skip complete ones, run the rest, summarise.

Outputs go only to ``OUT/<case_id>/`` (case ids are validated safe names; paths from the
manifest and DICOM tags never name an output), plus ``OUT/summary.csv``, ``OUT/summary.json`` and
``OUT/index.html``. The whole batch holds ``OUT/.vmgga.lock`` so that two batches cannot write into
the same folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from vmgga.batch.case import CaseOutcome, CaseStatus, CaseTask, skipped_outcome
from vmgga.batch.executors import (
    check_scheduler,
    run_dask,
    run_process_pool,
    run_serial,
    threads_per_worker,
    usable_cores,
)
from vmgga.batch.manifest import Case, Manifest, read_manifest
from vmgga.batch.state import case_fingerprint, completed_record, utc_now
from vmgga.batch.summary import status_counts, summary_line, write_summary
from vmgga.config import make_config
from vmgga.errors import ConfigError
from vmgga.io.lock import OutputFolderLock
from vmgga.qc.index import write_index


@dataclass(frozen=True)
class BatchOptions:
    """How to run a batch."""

    output_dir: Path  # OUT
    workers: int = 1  # local worker processes (1: in this process)
    scheduler: str | None = None  # Dask scheduler address (tcp://host:8786); overrides workers
    connect_timeout_s: float = 10.0  # wait for the Dask scheduler at most this long (seconds)
    force: bool = False  # recompute complete cases too
    preset: str = "fast"  # registration preset
    threads: int | None = None  # threads per worker; None: cores // workers
    quiet: bool = False  # no progress bar
    config_overrides: dict = field(default_factory=dict)  # make_config overrides (after the manifest's)


@dataclass
class BatchSummary:
    """What a batch run did."""

    outcomes: list[CaseOutcome]  # in manifest order
    counts: dict[str, int]  # done / skipped / failed
    elapsed_s: float  # wall time of this run
    output_dir: Path

    @property
    def exit_status(self) -> int:
        """0 when every case is complete (done now or skipped), 1 when any case failed."""
        return 1 if self.counts[CaseStatus.FAILED] else 0


def run_batch(manifest: str | Path | Manifest, options: BatchOptions) -> BatchSummary:
    """Run (or resume) a batch; never raises for a problem of one case.

    Raises:
        VmggaError: a bad manifest, a bad option, or an output folder locked by another run.
    """
    start = time.perf_counter()
    manifest = manifest if isinstance(manifest, Manifest) else read_manifest(manifest)
    if options.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {options.workers}")
    config = make_config(options.preset, **{**manifest.config_overrides, **options.config_overrides})
    output_dir = Path(options.output_dir).expanduser().resolve()
    if options.scheduler:  # before anything is written: an unreachable scheduler leaves no folder
        check_scheduler(options.scheduler, options.connect_timeout_s)
    with OutputFolderLock(output_dir):
        jobs = plan_jobs(manifest.cases, config, output_dir, options.force)
        outcomes = _execute(jobs, options, len(manifest.cases))
        ordered = [outcomes[case.case_id] for case in manifest.cases]
        summary = BatchSummary(ordered, status_counts(ordered), time.perf_counter() - start, output_dir)
        _write_reports(summary, manifest, config, options)
    return summary


def plan_jobs(cases: tuple[Case, ...], config, output_dir: Path, force: bool) -> list[list[CaseTask]]:
    """Group cases into jobs (a chain is one job, in order) and mark complete ones as skipped."""
    jobs: list[list[CaseTask]] = []
    job_of: dict[str, list[CaseTask]] = {}
    fingerprints: dict[str, str] = {}
    by_id = {case.case_id: case for case in cases}
    for case in cases:
        predecessor = by_id.get(case.chain_from) if case.chain_from else None
        pair_fixed = predecessor.moving if predecessor else None
        fingerprint = case_fingerprint(case, config, pair_fixed, fingerprints.get(case.chain_from or ""))
        fingerprints[case.case_id] = fingerprint
        case_dir = output_dir / case.case_id
        record = None if force else completed_record(case_dir, fingerprint)
        task = CaseTask(
            case, config, str(case_dir), fingerprint, record is not None, pair_fixed,
            str(output_dir / predecessor.case_id) if predecessor else None, record,
        )  # fmt: skip
        job = job_of[case.chain_from] if predecessor else []
        if not predecessor:
            jobs.append(job)
        job.append(task)
        job_of[case.case_id] = job
    return jobs


def _execute(jobs: list[list[CaseTask]], options: BatchOptions, total: int) -> dict[str, CaseOutcome]:
    """Run the jobs that have work, with a progress bar over cases; outcomes by case id."""
    outcomes: dict[str, CaseOutcome] = {}
    with tqdm(total=total, unit="case", desc="vmgga batch", disable=options.quiet, dynamic_ncols=True) as bar:

        def on_done(job_outcomes: list[CaseOutcome]) -> None:
            for outcome in job_outcomes:
                outcomes[outcome.case_id] = outcome
            bar.update(len(job_outcomes))
            failed = sum(o.status == CaseStatus.FAILED for o in outcomes.values())
            bar.set_postfix(failed=failed, refresh=False)

        to_run = []
        for job in jobs:
            if all(task.skip for task in job):
                on_done([skipped_outcome(task) for task in job])
            else:
                to_run.append(job)
        if to_run:
            _dispatch(to_run, options, on_done)
    return outcomes


def _dispatch(jobs: list[list[CaseTask]], options: BatchOptions, on_done) -> None:
    """Send the jobs to Dask, a process pool, or run them here."""
    if options.scheduler:
        run_dask(jobs, options.scheduler, on_done)
        return
    workers = min(options.workers, len(jobs))
    threads = threads_per_worker(workers, _requested_threads(options, jobs), usable_cores())
    jobs = [[replace(t, config=replace(t.config, num_threads=threads)) for t in job] for job in jobs]
    if workers == 1:
        run_serial(jobs, threads, on_done)
    else:
        run_process_pool(jobs, workers, threads, on_done)


def _requested_threads(options: BatchOptions, jobs: list[list[CaseTask]]) -> int | None:
    """--threads, else the config's num_threads, else None (use the whole budget)."""
    return options.threads if options.threads is not None else jobs[0][0].config.num_threads


def _write_reports(summary: BatchSummary, manifest: Manifest, config, options: BatchOptions) -> None:
    """summary.csv, summary.json and index.html."""
    info = {
        "manifest": str(manifest.path),
        "finished_utc": utc_now(),
        "elapsed_s": summary.elapsed_s,
        "executor": options.scheduler or f"local, {options.workers} worker(s)",
        "config": config.to_dict(),
    }
    write_summary(summary.output_dir, summary.outcomes, info)
    write_index(
        summary.output_dir,
        [o.as_dict() for o in summary.outcomes],
        title=f"vmgga batch: {manifest.path.name}",
    )


__all__ = ["BatchOptions", "BatchSummary", "run_batch", "plan_jobs", "summary_line"]
