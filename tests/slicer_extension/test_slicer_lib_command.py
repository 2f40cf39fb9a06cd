"""Command line of ``vmgga register`` as the Slicer module builds it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from VMGGARegistrationLib.command import (
    CommandError,
    RegisterRequest,
    build_register_command,
    python_executable,
    resolve_device,
)


def _request(**overrides) -> RegisterRequest:
    values = dict(
        fixed_path=Path("/tmp/a b/fixed.nrrd"), moving_path=Path("/tmp/moving.nrrd"), output_dir=Path("/o")
    )
    return RegisterRequest(**{**values, **overrides})


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_command_follows_the_cli_contract():
    command = build_register_command("/slicer/bin/PythonSlicer", _request(preset="accurate", device="cuda"))
    assert command[:4] == ["/slicer/bin/PythonSlicer", "-m", "vmgga", "register"]
    assert command[4:6] == ["/tmp/a b/fixed.nrrd", "/tmp/moving.nrrd"]  # one argument each, spaces kept
    assert _option(command, "-o") == "/o"
    assert _option(command, "--preset") == "accurate"
    assert _option(command, "--fixed-modality") == "auto"
    assert _option(command, "--moving-modality") == "auto"
    assert _option(command, "--device") == "cuda"
    assert command[-1] == "--progress-json"
    assert "--initial-transform" not in command
    assert "--threads" not in command
    assert "--matcher" not in command  # the preset's matcher
    assert "--half-turn-search" not in command


def test_command_passes_modalities_and_initial_transform():
    request = _request(
        fixed_modality="ct", moving_modality="mr", initial_transform_path=Path("/t/init.h5"), threads=2
    )
    command = build_register_command("py", request)
    assert _option(command, "--threads") == "2"
    assert _option(command, "--fixed-modality") == "ct"
    assert _option(command, "--moving-modality") == "mr"
    assert _option(command, "--initial-transform") == "/t/init.h5"


def _core_parser():
    """The real ``vmgga register`` argument parser.

    Imported plainly, not with ``importorskip``: a broken core import must fail the Slicer-to-CLI
    contract tests, not skip them.
    """
    import argparse

    from vmgga.cli import register

    parser = argparse.ArgumentParser()
    register.add_arguments(parser)
    return parser


def test_command_is_accepted_by_the_core_parser():
    """The real ``vmgga register`` parser accepts what the module builds (once the core has it)."""
    parser = _core_parser()
    request = _request(
        fixed_modality="ct", moving_modality="mr", initial_transform_path=Path("/t/i.h5"), threads=3
    )
    args = parser.parse_args(build_register_command("py", request)[4:])
    assert vars(args)["half_turn_search"] is False
    turned = parser.parse_args(build_register_command("py", _request(half_turn_search=True))[4:])
    assert vars(turned)["half_turn_search"] is True
    assert vars(args)["threads"] == 3
    assert vars(args)["initial_transform"] == "/t/i.h5"
    assert (vars(args)["fixed_modality"], vars(args)["moving_modality"]) == ("ct", "mr")
    assert vars(args)["progress_json"] is True
    assert vars(args)["preset"] == "fast"
    assert vars(args)["device"] == "cpu"


@pytest.mark.parametrize("matcher", ["fused", "vmgga", "cost_volume"])
def test_presets_and_matchers_match_the_core_parser(matcher):
    """Every preset and every explicit matcher the module offers is one the core accepts."""
    from VMGGARegistrationLib.command import Matcher, Preset

    parser = _core_parser()
    for preset in Preset:
        args = parser.parse_args(
            build_register_command("py", _request(preset=preset.value, matcher=matcher))[4:]
        )
        assert (args.preset, args.matcher) == (preset.value, matcher)
    assert {m.value for m in Matcher} - {"preset"} == {"fused", "vmgga", "cost_volume"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("preset", "medium", "preset='medium' is not allowed"),
        ("matcher", "sift", "matcher='sift' is not allowed"),
        ("fixed_modality", "pet", "fixed_modality='pet'"),
        ("moving_modality", "CT", "moving_modality='CT'"),
        ("device", "tpu", "device='tpu'"),
        ("device", "auto", "must be resolved"),
        ("threads", 0, "threads=0 is not allowed"),
    ],
)
def test_command_rejects_values_outside_the_contract(field, value, message):
    with pytest.raises(CommandError, match=message):
        build_register_command("py", _request(**{field: value}))


@pytest.mark.parametrize(
    ("requested", "cuda", "expected"),
    [("auto", True, "cuda"), ("auto", False, "cpu"), ("cpu", True, "cpu"), ("cuda", True, "cuda")],
)
def test_resolve_device(requested, cuda, expected):
    assert resolve_device(requested, cuda_available=cuda) == expected


def test_resolve_device_refuses_cuda_without_a_gpu():
    with pytest.raises(CommandError, match="no CUDA device"):
        resolve_device("cuda", cuda_available=False)


def test_python_executable_prefers_python_slicer_on_the_path(tmp_path):
    found = python_executable(str(tmp_path), which=lambda name: f"/opt/Slicer/bin/{name}")
    assert found == "/opt/Slicer/bin/PythonSlicer"


@pytest.mark.parametrize(("platform", "name"), [("linux", "PythonSlicer"), ("win32", "PythonSlicer.exe")])
def test_python_executable_is_found_in_the_application_home(tmp_path, platform, name):
    """Without PythonSlicer on the PATH: <home>/bin/PythonSlicer[.exe], never sys.executable."""
    (tmp_path / "bin").mkdir()
    with pytest.raises(CommandError, match=f"cannot find {name}"):
        python_executable(str(tmp_path), which=lambda _: None, platform=platform)
    (tmp_path / "bin" / name).write_text("")
    found = python_executable(str(tmp_path), which=lambda _: None, platform=platform)
    assert found == str(tmp_path / "bin" / name)
    assert found != sys.executable


def test_python_executable_without_a_home_fails_clearly():
    with pytest.raises(CommandError, match="run the module inside 3D Slicer"):
        python_executable(None, which=lambda _: None)
