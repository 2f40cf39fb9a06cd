"""Registering every pair of a bundle run with :func:`vmgga.register`, one failure at a time."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vmgga.bundle.config import as_bool
from vmgga.bundle.outputs import check_no_input_overwritten, commit_outputs, pair_output_dir
from vmgga.bundle.pairs import RegistrationPair
from vmgga.config import RegistrationConfig
from vmgga.errors import ConfigError, VmggaError

logger = logging.getLogger("vmgga.bundle")


class BundleRunError(VmggaError):
    """One or more pairs of a datalist failed; the message lists each case and its error."""


class ProgressLogger:
    """A :data:`vmgga.api.ProgressCallback` that logs each stage once, at its start and end."""

    def __init__(self, case_id: str) -> None:
        self.case_id = case_id
        self._stage: str | None = None

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        if stage != self._stage:
            self._stage = stage
            logger.info("case %s: %s started %s", self.case_id, stage, message)
        elif fraction >= 1.0:
            logger.info("case %s: %s done %s", self.case_id, stage, message)


class RegistrationRunner:
    """Registers every pair with :func:`vmgga.register` and writes its outputs.

    Args:
        pairs: From :func:`vmgga.bundle.pairs.load_pairs`.
        output_dir: One pair: its files go here. Datalist: one sub-folder per ``case_id``.
        config: Shared by every pair (see :func:`vmgga.bundle.config.registration_config`).
        qc: Also write ``qc.html`` per pair.
        stop_on_error: Datalist form: stop at the first failed pair (default: go on, then raise a
            :class:`BundleRunError` listing the failures). A single pair always re-raises its error.
    """

    def __init__(
        self,
        pairs: Sequence[RegistrationPair],
        output_dir: str | os.PathLike,
        config: RegistrationConfig,
        qc: bool = False,
        stop_on_error: bool = False,
    ) -> None:
        if output_dir is None or str(output_dir) == "":
            raise ConfigError("--output_dir is required")
        self.pairs = list(pairs)
        self.output_dir = Path(output_dir)
        self.config = config
        self.qc = as_bool(qc, "qc")
        self.stop_on_error = as_bool(stop_on_error, "stop_on_error")

    def register_pair(self, pair: RegistrationPair) -> tuple[Any, dict[str, Path]]:
        """Register one pair and commit its outputs; returns ``(result, {name: path})``."""
        from vmgga import register

        out_dir = pair_output_dir(self.output_dir, pair)
        check_no_input_overwritten(pair, out_dir)
        logger.info("case %s: fixed=%s moving=%s -> %s", pair.case_id, pair.fixed, pair.moving, out_dir)
        result = register(pair.fixed, pair.moving, self.config, progress=ProgressLogger(pair.case_id))
        return result, commit_outputs(result, out_dir, qc=self.qc)

    def run(self) -> dict[str, dict[str, str]]:
        """Run every pair; returns ``{case_id: {output name: path}}`` of the pairs that succeeded.

        Raises:
            VmggaError: the pair's own error in the one-pair form; :class:`BundleRunError` listing
                every failed case in the datalist form. Failed pairs leave no output folder.
        """
        return self._run_all(lambda pair: {k: str(v) for k, v in self.register_pair(pair)[1].items()})

    def _run_all(self, job) -> dict[str, Any]:
        """Apply ``job`` to every pair, logging and collecting failures (see :meth:`run`)."""
        done: dict[str, Any] = {}
        failures: dict[str, str] = {}
        for pair in self.pairs:
            try:
                done[pair.case_id] = job(pair)
            except VmggaError as error:
                logger.error("case %s: error: %s (no output written)", pair.case_id, error)
                if len(self.pairs) == 1 or self.stop_on_error:
                    raise
                failures[pair.case_id] = str(error)
        if failures:
            listing = "; ".join(f"{case}: {message}" for case, message in failures.items())
            raise BundleRunError(f"{len(failures)} of {len(self.pairs)} pairs failed: {listing}")
        return done
