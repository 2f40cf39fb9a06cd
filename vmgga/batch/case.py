"""Run one batch case (or a chain of them) inside a worker: register, write, score, mark done.

Everything here runs in a worker process (local pool or Dask worker) and talks to the batch only
through the picklable :class:`CaseTask` and the returned :class:`CaseOutcome`. Any error of one
case is caught, written to ``OUT/<case_id>/error.json`` and returned: the batch goes on.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import threadpoolctl

from vmgga.batch.chain import chained_result
from vmgga.batch.labels import label_values, read_labels, warp_labels
from vmgga.batch.manifest import Case
from vmgga.batch.state import clear_markers, utc_now, write_done, write_error
from vmgga.errors import InputError, OutputError
from vmgga.frames import array_from_image
from vmgga.io.atomic import remove_stale_partials, write_image_atomic
from vmgga.metrics import dice_per_label

WARPED_LABELS_NAME = "warped_labels.nii.gz"


class CaseStatus:
    """Outcome of a case in one batch run."""

    DONE = "done"  # computed in this run
    SKIPPED = "skipped"  # complete and valid from an earlier run
    FAILED = "failed"  # error recorded in error.json


@dataclass(frozen=True)
class CaseTask:
    """Everything a worker needs for one case (picklable)."""

    case: Case
    config: object  # vmgga.RegistrationConfig (num_threads set by the worker)
    case_dir: str  # OUT/<case_id>
    fingerprint: str  # see vmgga.batch.state.case_fingerprint
    skip: bool  # complete from an earlier run: only report it
    pair_fixed: str | None = None  # chained case: the predecessor's moving image
    predecessor_dir: str | None = None  # chained case: OUT/<predecessor case_id>
    previous_record: dict | None = None  # done.json of a skipped case (its metrics, run time)


@dataclass
class CaseOutcome:
    """What a worker reports back for one case."""

    case_id: str
    status: str  # CaseStatus value
    run_time_s: float  # registration + outputs (the recorded time for skipped cases)
    metrics: dict = field(default_factory=dict)  # jacobian / confidence / dice statistics
    error: str | None = None  # one-line message of a failed case
    disk_full: bool = False  # failed because the output device ran out of space

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def run_job(tasks: list[CaseTask], threads: int | dict | None = None) -> list[CaseOutcome]:
    """Run the cases of one job in order (a chain needs its predecessors first).

    Args:
        tasks: the job's cases.
        threads: threads per case; a dict maps Dask worker addresses to counts; None keeps the config.
    """
    count = _threads_here(threads)
    if count:
        set_thread_limits(count)
    outcomes: list[CaseOutcome] = []
    for task in tasks:
        if count:
            task = dataclasses.replace(task, config=dataclasses.replace(task.config, num_threads=count))
        failed_before = _failed_predecessor(task, outcomes)
        outcomes.append(skipped_outcome(task) if task.skip else run_case(task, failed_before))
    return outcomes


def _threads_here(threads: int | dict | None) -> int | None:
    """Resolve the per-worker thread count (on Dask: look this worker up by address)."""
    if not isinstance(threads, dict):
        return threads
    from distributed import get_worker

    return threads.get(get_worker().address, 1)


def set_thread_limits(count: int) -> None:
    """Bound torch, ITK and OpenMP/BLAS threads of this process to ``count``.

    The environment variables reach libraries loaded later; a BLAS already loaded (numpy's OpenBLAS
    reads them once) is bounded through ``threadpoolctl``, so that a case computes the same numbers
    in the batch's own process as in a fresh worker (a BLAS product summed by 2 threads differs from
    one summed by 1 in the last bits).
    """
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = str(count)
    threadpoolctl.threadpool_limits(limits=count)
    import torch

    torch.set_num_threads(count)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(count)


def _failed_predecessor(task: CaseTask, outcomes: list[CaseOutcome]) -> str | None:
    """The predecessor's id when it failed in this job."""
    for outcome in outcomes:
        if outcome.case_id == task.case.chain_from and outcome.status == CaseStatus.FAILED:
            return outcome.case_id
    return None


def skipped_outcome(task: CaseTask) -> CaseOutcome:
    """The outcome of a case found complete: the recorded run time and metrics."""
    record = task.previous_record or {}
    return CaseOutcome(
        task.case.case_id, CaseStatus.SKIPPED, record.get("run_time_s", 0.0), record.get("metrics", {})
    )


def run_case(task: CaseTask, failed_predecessor: str | None = None) -> CaseOutcome:
    """Compute one case; never raises for a problem of this case (it is recorded instead)."""
    case_dir = Path(task.case_dir)
    start = time.perf_counter()
    try:
        case_dir.mkdir(parents=True, exist_ok=True)
        clear_markers(case_dir)
        remove_stale_partials(case_dir)  # temporary files of a killed earlier run
        if failed_predecessor:
            raise InputError(f"chained predecessor case {failed_predecessor!r} failed")
        metrics = _compute(task, case_dir, start)
    except Exception as error:  # fault isolation: one bad case must not stop the batch
        run_time = time.perf_counter() - start
        try:
            write_error(case_dir, task.case.case_id, error, run_time)
        except Exception:  # OSError, or a write error of vmgga (e.g. a full disk) on error.json itself
            pass  # the outcome still carries the message into the summary
        return CaseOutcome(task.case.case_id, CaseStatus.FAILED, run_time, error=_one_line(error),
                           disk_full=is_disk_full(error, case_dir))  # fmt: skip
    return CaseOutcome(task.case.case_id, CaseStatus.DONE, time.perf_counter() - start, metrics)


def _compute(task: CaseTask, case_dir: Path, start: float) -> dict:
    """Register, write every output, then done.json last; returns the case's metrics."""
    import vmgga
    from vmgga.qc.report import write_qc_page

    _check_outside_inputs(task.case, case_dir)
    result = _register(task)
    outputs = {k: Path(v) for k, v in vmgga.write_outputs(result, case_dir).items()}
    dice = _write_labels(task.case, result, case_dir, outputs)
    outputs["qc"] = write_qc_page(result, case_dir, title=f"QC: {task.case.case_id}")
    metrics = case_metrics(result.report, dice)
    record = {"case_id": task.case.case_id, "run_time_s": time.perf_counter() - start, "metrics": metrics}
    write_done(case_dir, task.fingerprint, outputs, {**record, "finished_utc": utc_now()})
    return metrics


def _register(task: CaseTask):
    """``vmgga.register`` for a plain case; pairwise registration plus composition when chained."""
    import vmgga

    case, config = task.case, _case_config(task)
    if not task.case.chain_from:
        return vmgga.register(case.fixed, case.moving, config, progress=False)
    previous_dir = Path(task.predecessor_dir)
    previous_transform = _read_transform(previous_dir / "transform.h5")
    previous_confidence = sitk.ReadImage(str(previous_dir / "confidence.nii.gz"), sitk.sitkFloat32)
    pair = vmgga.register(task.pair_fixed, case.moving, config, progress=False)
    baseline = sitk.ReadImage(case.fixed, sitk.sitkFloat32)
    return chained_result(pair, previous_transform, previous_confidence, baseline)


def _case_config(task: CaseTask):
    """The batch config with this case's modalities (chained pairs: both follow-ups share one)."""
    modalities = {"fixed_modality": task.case.fixed_modality, "moving_modality": task.case.moving_modality}
    if task.case.chain_from:
        modalities["fixed_modality"] = task.case.moving_modality
    preprocess = dataclasses.replace(task.config.preprocess, **modalities)
    return dataclasses.replace(task.config, preprocess=preprocess)


def _read_transform(path: Path) -> sitk.Transform:
    try:
        return sitk.ReadTransform(str(path))
    except RuntimeError as error:
        raise InputError(f"chained predecessor transform '{path}' is not readable") from error


def _write_labels(case: Case, result, case_dir: Path, outputs: dict[str, Path]) -> dict[int, float] | None:
    """Warp the moving labels (nearest neighbour) and score them against the fixed labels.

    A case without moving labels removes a ``warped_labels.nii.gz`` left by an earlier run, so the
    folder never shows labels of another pair.
    """
    if not case.moving_labels:
        (case_dir / WARPED_LABELS_NAME).unlink(missing_ok=True)
        return None
    moving_labels = read_labels(case.moving_labels, "moving")
    warped = warp_labels(moving_labels, result.fixed, result.transform)
    outputs["warped_labels"] = write_image_atomic(warped, case_dir / WARPED_LABELS_NAME)
    if not case.fixed_labels:
        return None
    fixed_labels = warp_labels(read_labels(case.fixed_labels, "fixed"), result.fixed, sitk.Transform())
    if case.dice_labels:
        return dice_per_label(array_from_image(fixed_labels), array_from_image(warped), case.dice_labels)
    shared = np.intersect1d(label_values(fixed_labels), label_values(moving_labels))
    return dice_per_label(array_from_image(fixed_labels), array_from_image(warped), shared)


def case_metrics(report: dict, dice: dict[int, float] | None) -> dict:
    """Per-case numbers for the summary: Jacobian and confidence statistics, Dice, and the verdict
    on the result (``result_status`` ``ok``/``suspect`` with ``suspect_reasons``)."""
    metrics = {
        "result_status": report.get("status", "ok"),
        "suspect_reasons": list(report.get("suspect_reasons") or []),
    }
    for section in ("jacobian", "confidence"):
        for key, value in (report.get(section) or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[f"{section}_{key}"] = float(value)
    if dice:
        metrics["dice"] = {str(k): v for k, v in sorted(dice.items())}
        metrics["dice_mean"] = float(np.mean(list(dice.values())))
    return metrics


def _check_outside_inputs(case: Case, case_dir: Path) -> None:
    """Refuse to write a case into a folder that holds one of its inputs."""
    out = case_dir.resolve()
    for path in (case.fixed, case.moving, case.fixed_labels, case.moving_labels):
        if path and (Path(path).resolve() == out or out in Path(path).resolve().parents):
            raise OutputError(f"case {case.case_id!r}: input '{path}' lies inside its output folder '{out}'")


def is_disk_full(error: BaseException, folder: Path) -> bool:
    """Whether a case failed because its output device is full: ENOSPC/EDQUOT, a full-disk error
    class of :mod:`vmgga.errors`, or a C++ writer error with (almost) no space left in ``folder``."""
    from vmgga.errors import DiskFullError
    from vmgga.io.verify import DISK_FULL_ERRNOS, LOW_SPACE_BYTES, free_bytes

    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return True
    if isinstance(error, DiskFullError):
        return True
    if isinstance(error, RuntimeError):
        return free_bytes(folder if folder.exists() else folder.parent) < LOW_SPACE_BYTES
    return False


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".strip()
