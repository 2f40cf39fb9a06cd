"""Issue 8, faults: a writer killed with SIGKILL at random moments, while it rewrites a set of
outputs again and again, never leaves a marker (``report.json``) next to files of another round."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from vmgga.io.atomic import PARTIAL_TAG, remove_stale_partials

#: Rewrites OUT in rounds 1, 2, ...: each round writes a transform, an image and the report,
#: all carrying the round number, through one OutputTransaction.
REWRITER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    import SimpleITK as sitk
    from vmgga.io.atomic import OutputTransaction

    out = Path(sys.argv[1])
    out.mkdir(exist_ok=True)
    for round_ in range(1, 100000):
        with OutputTransaction(out) as transaction:
            sitk.WriteTransform(sitk.TranslationTransform(3, (float(round_), 0, 0)), str(transaction.staged("transform.h5")))
            image = sitk.GetImageFromArray(np.full((40, 40, 40), round_, np.float32))
            sitk.WriteImage(image, str(transaction.staged("warped.nii.gz")), True)
            transaction.staged("report.json").write_text(json.dumps({"round": round_}))
        if round_ == 1:
            print("first round written", flush=True)
    """
)


def check_consistent(out: Path) -> int:
    """If the marker exists, every output is complete and of the marker's round; returns the round."""
    report = out / "report.json"
    if not report.exists():
        return 0
    round_ = json.loads(report.read_text())["round"]
    assert sitk.ReadTransform(str(out / "transform.h5")).GetParameters()[0] == round_
    warped = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "warped.nii.gz")))
    assert warped.shape == (40, 40, 40) and np.all(warped == round_)
    return round_


def test_sigkill_during_rewrites_never_leaves_an_inconsistent_set(tmp_path):
    rng = random.Random(8)
    out = tmp_path / "out"
    rounds_seen = []
    for _ in range(4):
        process = subprocess.Popen(
            [sys.executable, "-c", REWRITER, str(out)], stdout=subprocess.PIPE, text=True
        )
        assert process.stdout.readline().strip() == "first round written"
        time.sleep(rng.uniform(0.0, 0.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        rounds_seen.append(check_consistent(out))
        remove_stale_partials(out)
        assert not [p for p in out.iterdir() if PARTIAL_TAG in p.name]  # the debris of the dead run is gone
        assert {p.name for p in out.iterdir()} <= {"transform.h5", "warped.nii.gz", "report.json"}
    assert max(rounds_seen) >= 1
