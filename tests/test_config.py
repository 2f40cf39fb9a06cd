"""``make_config``: presets, overrides in every accepted form, and errors that name the field."""

from __future__ import annotations

import dataclasses

import pytest

from vmgga.config import (
    PRESETS,
    AffineConfig,
    DenseConfig,
    FeatureBackend,
    PreprocessConfig,
    RegistrationConfig,
    make_config,
)
from vmgga.errors import ConfigError, look_up_option


def value_at(config: RegistrationConfig, dotted: str):
    """``config.dense.adam_iterations`` for ``"dense.adam_iterations"``."""
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def test_fast_is_the_defaults_with_the_fused_matcher():
    config = make_config()
    assert config.preset == "fast"
    assert config.preprocess == PreprocessConfig()
    assert config.affine == AffineConfig()
    assert config.dense == DenseConfig(matcher="fused")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_apply_their_overrides_and_keep_other_defaults(preset):
    config = make_config(preset)
    assert config.preset == preset
    for dotted, value in PRESETS[preset].items():
        assert value_at(config, dotted) == value
    untouched = [f.name for f in dataclasses.fields(DenseConfig) if f"dense.{f.name}" not in PRESETS[preset]]
    for name in untouched:
        assert getattr(config.dense, name) == getattr(DenseConfig(), name)


def test_accurate_differs_from_fast():
    assert PRESETS["accurate"], "the accurate preset must change something"
    assert make_config("accurate") != dataclasses.replace(make_config("fast"), preset="accurate")


def test_override_forms_are_equivalent():
    dotted = make_config(**{"dense.adam_iterations": 7, "affine.enabled": False})
    nested = make_config(dense={"adam_iterations": 7}, affine={"enabled": False})
    # a whole section replaces the preset's section, so it names the preset's matcher itself
    as_dataclass = make_config(
        dense=DenseConfig(adam_iterations=7, matcher="fused"), affine=AffineConfig(enabled=False)
    )
    assert dotted == nested == as_dataclass
    assert dotted.dense.adam_iterations == 7 and dotted.affine.enabled is False


def test_user_overrides_win_over_the_preset():
    dotted = next(iter(PRESETS["accurate"]))
    section, name = dotted.split(".")
    current = getattr(getattr(make_config("accurate"), section), name)
    changed = current * 2
    assert value_at(make_config("accurate", **{dotted: changed}), dotted) == changed


def test_top_level_fields_and_lists_become_tuples():
    config = make_config(device="cuda", seed=3, preprocess={"ct_window_hu": [-500, 500]})
    assert config.device == "cuda" and config.seed == 3
    assert config.preprocess.ct_window_hu == (-500, 500)


def test_to_dict_rebuilds_the_same_config():
    config = make_config("accurate", seed=5, **{"dense.features": "vmgga"})
    plain = config.to_dict()
    sections = {k: plain.pop(k) for k in ("preprocess", "affine", "dense")}
    preset = plain.pop("preset")
    assert make_config(preset, **plain, **sections) == config


def test_configs_are_frozen():
    config = make_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.dense.adam_iterations = 1


def test_unknown_preset_names_the_allowed_ones():
    with pytest.raises(
        ConfigError,
        match=r"preset='quick' is not allowed; expected one of \['fast', 'accurate', 'inter_patient'\]",
    ):
        make_config("quick")


def test_unknown_field_names_the_section_and_allowed_fields():
    with pytest.raises(
        ConfigError,
        match=r"unknown config field 'adam_iters' in dense; expected one of \[.*'adam_iterations'",
    ):
        make_config(**{"dense.adam_iters": 3})
    with pytest.raises(
        ConfigError, match=r"unknown config field 'speed' in RegistrationConfig; expected one of \[.*'seed'"
    ):
        make_config(speed=3)


def test_unknown_section_names_the_allowed_ones():
    with pytest.raises(
        ConfigError,
        match=r"unknown config section 'optimiser'; expected one of \['preprocess', 'affine', 'dense'\]",
    ):
        make_config(**{"optimiser.steps": 3})


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        make_config("quick")


def test_look_up_option_accepts_enum_members_and_values():
    assert look_up_option("mind", FeatureBackend, "features") == "mind"
    assert look_up_option(FeatureBackend.VMGGA, FeatureBackend, "features") == "vmgga"
    with pytest.raises(
        ConfigError,
        match=r"features='sift' is not allowed; expected one of \['mind', 'vmgga', 'dinov2', 'mind\+vmgga'\]",
    ):
        look_up_option("sift", FeatureBackend, "features")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("dense.features", "sift"),
        ("dense.matcher", "magic"),
        ("dense.regularisation", "elastic"),
        ("preprocess.fixed_modality", "pet"),
        ("preprocess.moving_modality", "us"),
        ("affine.initialization", "random"),
        ("affine.transform", "bspline"),
    ],
)
def test_string_options_outside_their_values_are_refused(key, value):
    with pytest.raises(ConfigError, match=rf"{key}='{value}' is not allowed; expected one of"):
        make_config(**{key: value})


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1", "mps"])
def test_devices_accepted(device):
    assert make_config(device=device).device == device


def test_unknown_device_is_refused():
    with pytest.raises(ConfigError, match="device='gpu' is not allowed"):
        make_config(device="gpu")


def test_inter_patient_preset_weakens_the_smoothness_penalty_and_keeps_the_cost_volume():
    fast, inter = make_config("fast"), make_config("inter_patient")
    assert inter.dense.regularisation_weight < fast.dense.regularisation_weight
    assert (fast.dense.matcher, inter.dense.matcher) == ("fused", "auto")  # auto + mind = cost volume
    same = dataclasses.replace(
        inter.dense, regularisation_weight=fast.dense.regularisation_weight, matcher="fused"
    )
    assert same == fast.dense
    assert inter.preprocess == fast.preprocess and inter.affine == fast.affine


# --- every preset override reaches the stage that uses it ----------------------------------------


class _Reached(Exception):
    """Raised by the stubbed dense stage: register() got that far."""


def _stage_inputs(config: RegistrationConfig, monkeypatch) -> dict[str, object]:
    """What register() hands each stage for ``config``, on a small 0.8 mm image (dense stage stubbed)."""
    import types

    import numpy as np
    import SimpleITK as sitk

    import vmgga.api as api

    seen: dict[str, object] = {}
    real_grid = api.working_geometry

    def working_geometry(geometry, spacing_mm, max_voxels):
        seen.setdefault("preprocess", {"working_spacing_mm": spacing_mm, "max_working_voxels": max_voxels})
        return real_grid(geometry, spacing_mm, max_voxels)

    def estimate_affine(fixed, moving, affine_config, **_):
        seen["affine"] = affine_config
        return types.SimpleNamespace(transform=sitk.AffineTransform(3))

    def estimate_dense_field(fixed_work, moving_work, dense_config, **_):
        seen["dense"] = dense_config
        raise _Reached

    monkeypatch.setattr(api, "working_geometry", working_geometry)
    monkeypatch.setattr(api, "estimate_affine", estimate_affine)
    monkeypatch.setattr(api, "estimate_dense_field", estimate_dense_field)
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.random((24, 24, 24)).astype(np.float32) * 100)
    image.SetSpacing((0.8, 0.8, 0.8))
    with pytest.raises(_Reached):
        api.register(image, image, config, progress=False)
    return seen


def _reached(seen: dict[str, object], dotted: str):
    section, name = dotted.split(".")
    if section == "preprocess":
        return seen["preprocess"][name]  # type: ignore[index]
    return getattr(seen[section], name)


PRESET_OVERRIDES = [(preset, dotted) for preset in sorted(PRESETS) for dotted in PRESETS[preset]]


@pytest.mark.parametrize(("preset", "dotted"), PRESET_OVERRIDES)
def test_every_preset_override_reaches_its_stage_and_changes_it(preset, dotted, monkeypatch):
    section, name = dotted.split(".")
    default = getattr(
        {"preprocess": PreprocessConfig, "affine": AffineConfig, "dense": DenseConfig}[section](), name
    )
    with_override = _stage_inputs(make_config(preset), monkeypatch)
    without = _stage_inputs(make_config(preset, **{dotted: default}), monkeypatch)
    assert _reached(with_override, dotted) == PRESETS[preset][dotted]
    assert _reached(without, dotted) != _reached(with_override, dotted), (
        f"{preset}: {dotted} is dead or a default"
    )


def test_a_voxel_control_grid_is_refused_while_the_mm_one_is_in_force():
    with pytest.raises(ConfigError, match="dense.adam_grid_spacing=6 has no effect"):
        make_config(**{"dense.adam_grid_spacing": 6})
    config = make_config(**{"dense.adam_grid_spacing": 6, "dense.adam_grid_spacing_mm": 0})
    assert config.dense.adam_grid_spacing == 6


def test_the_dense_parts_split_every_field_once():
    from vmgga.config import DENSE_PARTS, dense_part

    named = [name for names in DENSE_PARTS.values() for name in names]
    assert sorted(named) == sorted(f.name for f in dataclasses.fields(DenseConfig))
    assert len(named) == len(set(named))
    assert dense_part(DenseConfig(adam_iterations=9), "instance")["adam_iterations"] == 9
    with pytest.raises(ConfigError, match="dense part"):
        dense_part(DenseConfig(), "warp")
