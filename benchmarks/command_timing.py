"""Time the whole ``vmgga register`` command (start-up, reading, registration, writing) in a child process.

``resource.getrusage(RUSAGE_CHILDREN)`` gives the child's peak RSS; the report's stage timings and the
sizes of the files written come back with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class CommandRun:
    """One ``vmgga register`` run."""

    seconds: float  # wall time of the whole command
    cpu_seconds: float  # user + system CPU time of the command (less sensitive to other load than wall time)
    peak_rss_mb: float  # the child's peak resident memory
    output_mb: dict[str, float]  # file -> size
    timings_s: dict[str, Any] = field(default_factory=dict)  # the report's stage timings
    returncode: int = 0
    stderr_tail: str = ""


def run_register(fixed: Path, moving: Path, out_dir: Path, args: list[str]) -> CommandRun:
    """Run ``python -m vmgga.cli.main register FIXED MOVING -o OUT ARGS`` and measure it.

    Each call runs in a fresh grandchild (``python -c`` wrapper) so that ``RUSAGE_CHILDREN`` holds
    this run's peak only.
    """
    command = [
        sys.executable,
        "-m",
        "vmgga.cli.main",
        "register",
        str(fixed),
        str(moving),
        "-o",
        str(out_dir),
    ]
    wrapper = "\n".join(
        [
            "import json, resource, subprocess, sys, time",
            "start = time.perf_counter()",
            "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)",
            "seconds = time.perf_counter() - start",
            "usage = resource.getrusage(resource.RUSAGE_CHILDREN)",
            "rss, cpu = usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime",
            "print(json.dumps({'seconds': seconds, 'cpu': cpu, 'rss': rss, 'rc': done.returncode,"
            " 'err': done.stderr[-2000:]}))",
        ]
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-c", wrapper, *command, "--quiet", *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    sizes = {p.name: p.stat().st_size / 1e6 for p in sorted(out_dir.glob("*")) if p.is_file()}
    report_path = out_dir / "report.json"
    timings = json.loads(report_path.read_text()).get("timings_s", {}) if report_path.exists() else {}
    return CommandRun(
        measured["seconds"], measured["cpu"], measured["rss"], sizes, timings, measured["rc"], measured["err"]
    )


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (CPU contention at the time of a measurement)."""
    return [round(x, 2) for x in os.getloadavg()]
