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
