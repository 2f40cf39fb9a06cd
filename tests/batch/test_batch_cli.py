"""``vmgga batch`` command line: options, help, exit status of a bad manifest, executor choices."""

from __future__ import annotations

import json

import pytest

from vmgga.batch.executors import threads_per_worker
from vmgga.cli.batch import parse_overrides
from vmgga.cli.main import build_parser, main
from vmgga.errors import ConfigError


def test_help_states_the_exit_status(capsys):
    with pytest.raises(SystemExit):
        main(["batch", "--help"])
    text = capsys.readouterr().out
    assert "exit status 0 when all cases are complete, 1 when any case failed" in text
    assert "--scheduler" in text and "--workers" in text and "subjects" in text


def test_arguments_and_overrides():
    args = build_parser().parse_args(
        [
            "batch",
            "m.csv",
            "-o",
            "out",
            "--workers",
            "3",
            "--set",
            "dense.instance.iterations=40",
            "--set",
            "device=cuda",
        ]
    )
    assert args.workers == 3 and args.scheduler is None and not args.force
    assert parse_overrides(args.set) == {"dense.instance.iterations": 40, "device": "cuda"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["no-equals-sign"])


def test_bad_manifest_exits_2_before_writing_anything(tmp_path, capsys):
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps([{"case_id": "../up", "fixed": "a", "moving": "b"}]))
    assert main(["batch", str(manifest), "-o", str(tmp_path / "out")]) == 2
    assert "case id '../up' is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["batch", str(manifest.with_name("absent.csv")), "-o", str(tmp_path / "out")]) == 2


def test_unknown_config_override_is_a_user_error(tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,fixed,moving\nc1,a.nii.gz,b.nii.gz\n")
    assert main(["batch", str(manifest), "-o", str(tmp_path / "out"), "--set", "dense.colour=1"]) == 2
    assert "unknown config field" in capsys.readouterr().err


def test_threads_per_worker_never_oversubscribes():
    assert threads_per_worker(1, cores=8) == 8
    assert threads_per_worker(3, cores=8) == 2
    assert threads_per_worker(16, cores=8) == 1
    assert threads_per_worker(2, requested=6, cores=8) == 4
    assert threads_per_worker(2, requested=1, cores=8) == 1
    for workers in range(1, 10):
        assert workers * threads_per_worker(workers, cores=8) <= max(8, workers)
