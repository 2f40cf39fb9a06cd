"""``make_config``: presets, overrides in every accepted form, and errors that name the field."""

from __future__ import annotations

import dataclasses

import pytest

from vmgga.config import (
    PRESETS,
    RENAMED,
    AffineConfig,
    DenseConfig,
    FeatureBackend,
    FeatureConfig,
    FittingConfig,
    InstanceConfig,
    MatchingConfig,
    PreprocessConfig,
    RegionConfig,
    RegistrationConfig,
    make_config,
)
from vmgga.errors import ConfigError, look_up_option


def value_at(config: RegistrationConfig, dotted: str):
    """``config.dense.instance.iterations`` for ``"dense.instance.iterations"``."""
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


#: The instance part of ``fast``, written out.
FAST_INSTANCE = InstanceConfig(
    grid_spacing_mm=12.0, sample_fraction=0.05, learning_rate=0.1, final_learning_rate=0.03
)
#: fast's learned matcher (--matcher vmgga|fused) runs on half-size volumes
FAST_MATCHING = MatchingConfig(learned_pool_factor=2)


def test_fast_is_the_defaults_with_a_coarser_control_grid_fewer_samples_and_smaller_steps():
    config = make_config()
    assert config.preset == "fast"
    assert config.preprocess == PreprocessConfig()
    assert config.affine == AffineConfig()
    assert config.dense == DenseConfig(instance=FAST_INSTANCE, matching=FAST_MATCHING)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_apply_their_overrides_and_keep_other_defaults(preset):
    config = make_config(preset)
    assert config.preset == preset
    for dotted, value in PRESETS[preset].items():
        assert value_at(config, dotted) == value
    for part in dataclasses.fields(DenseConfig):
        defaults = getattr(DenseConfig(), part.name)
        for f in dataclasses.fields(defaults):
            if f"dense.{part.name}.{f.name}" not in PRESETS[preset]:
                assert getattr(getattr(config.dense, part.name), f.name) == getattr(defaults, f.name)


def test_accurate_differs_from_fast():
    assert PRESETS["accurate"], "the accurate preset must change something"
    assert make_config("accurate") != dataclasses.replace(make_config("fast"), preset="accurate")


def test_override_forms_are_equivalent():
    dotted = make_config(**{"dense.instance.iterations": 7, "affine.enabled": False})
    nested = make_config(dense={"instance": {"iterations": 7}}, affine={"enabled": False})
    part = make_config(**{"dense.instance": {"iterations": 7}}, affine={"enabled": False})
    # a whole section replaces the preset's section, so it names the preset's matcher itself
    as_dataclass = make_config(
        dense=DenseConfig(instance=dataclasses.replace(FAST_INSTANCE, iterations=7), matching=FAST_MATCHING),
        affine=AffineConfig(enabled=False),
    )
    assert dotted == nested == part == as_dataclass
    assert dotted.dense.instance.iterations == 7 and dotted.affine.enabled is False


def test_user_overrides_win_over_the_preset():
    for dotted in PRESETS["accurate"]:
        changed = value_at(make_config("accurate"), dotted) * 2
        assert value_at(make_config("accurate", **{dotted: changed}), dotted) == changed
    dotted = "dense.instance.iterations"
    changed = value_at(make_config("accurate"), dotted) * 2
    assert value_at(make_config("accurate", **{dotted: changed}), dotted) == changed


def test_top_level_fields_and_lists_become_tuples():
    config = make_config(device="cuda", seed=3, preprocess={"ct_window_hu": [-500, 500]})
    assert config.device == "cuda" and config.seed == 3
    assert config.preprocess.ct_window_hu == (-500, 500)


def test_to_dict_rebuilds_the_same_config():
    config = make_config("accurate", seed=5, **{"dense.features.backend": "vmgga"})
    plain = config.to_dict()
    sections = {k: plain.pop(k) for k in ("preprocess", "affine", "dense")}
    preset = plain.pop("preset")
    assert make_config(preset, **plain, **sections) == config


def test_configs_are_frozen():
    config = make_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.dense.instance.iterations = 1


def test_unknown_preset_names_the_allowed_ones():
    with pytest.raises(
        ConfigError,
        match=r"preset='quick' is not allowed; expected one of \['fast', 'accurate', 'inter_patient'\]",
    ):
        make_config("quick")


def test_unknown_field_names_the_section_and_allowed_fields():
    with pytest.raises(
        ConfigError,
        match=r"unknown config field 'iters' in dense.instance; expected one of \[.*'iterations'",
    ):
        make_config(**{"dense.instance.iters": 3})
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
    assert look_up_option(FeatureBackend.LEARNED, FeatureBackend, "features") == "vmgga"
    with pytest.raises(
        ConfigError,
        match=r"features='sift' is not allowed; expected one of \['auto', 'mind', 'vmgga', 'dinov2', 'mind\+vmgga'\]",
    ):
        look_up_option("sift", FeatureBackend, "features")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("dense.features.backend", "sift"),
        ("dense.matching.matcher", "magic"),
        ("dense.instance.regularisation", "elastic"),
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


def test_inter_patient_preset_has_a_finer_control_grid_and_a_weaker_penalty_than_fast():
    fast, inter = make_config("fast"), make_config("inter_patient")
    assert inter.dense.instance.regularisation_weight < fast.dense.instance.regularisation_weight
    assert inter.dense.instance.grid_spacing_mm < fast.dense.instance.grid_spacing_mm
    # both match with the MIND cost volume (auto + mind)
    assert (fast.dense.matching.matcher, inter.dense.matching.matcher) == ("auto", "auto")
    assert inter.dense == DenseConfig(instance=InstanceConfig(regularisation_weight=1.0))
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
    section, *path = dotted.split(".")
    if section == "preprocess":
        return seen["preprocess"][path[0]]  # type: ignore[index]
    return value_at(seen[section], ".".join(path))


PRESET_OVERRIDES = [(preset, dotted) for preset in sorted(PRESETS) for dotted in PRESETS[preset]]


@pytest.mark.parametrize(("preset", "dotted"), PRESET_OVERRIDES)
def test_every_preset_override_reaches_its_stage_and_changes_it(preset, dotted, monkeypatch):
    section, _, rest = dotted.partition(".")
    default = value_at(
        {"preprocess": PreprocessConfig, "affine": AffineConfig, "dense": DenseConfig}[section](), rest
    )
    with_override = _stage_inputs(make_config(preset), monkeypatch)
    without = _stage_inputs(make_config(preset, **{dotted: default}), monkeypatch)
    assert _reached(with_override, dotted) == PRESETS[preset][dotted]
    assert _reached(without, dotted) != _reached(with_override, dotted), (
        f"{preset}: {dotted} is dead or a default"
    )


def test_a_voxel_control_grid_is_refused_while_the_mm_one_is_in_force():
    with pytest.raises(ConfigError, match="dense.instance.grid_spacing_vox=6 has no effect"):
        make_config(**{"dense.instance.grid_spacing_vox": 6})
    config = make_config(**{"dense.instance.grid_spacing_vox": 6, "dense.instance.grid_spacing_mm": 0})
    assert config.dense.instance.grid_spacing_vox == 6
    with pytest.raises(ConfigError, match="dense.instance.tissue_margin_vox=3 has no effect"):
        make_config(**{"dense.instance.tissue_margin_vox": 3})
    config = make_config(**{"dense.instance.tissue_margin_vox": 3, "dense.instance.tissue_margin_mm": 0})
    assert config.dense.instance.tissue_margin_vox == 3


def test_the_dense_parts_are_the_sub_stages_in_order():
    parts = [(f.name, type(getattr(DenseConfig(), f.name))) for f in dataclasses.fields(DenseConfig)]
    assert parts == [
        ("region", RegionConfig),
        ("features", FeatureConfig),
        ("matching", MatchingConfig),
        ("fitting", FittingConfig),
        ("instance", InstanceConfig),
    ]


def test_spacing_knobs_name_their_unit():
    """A spacing or size of the dense stage ends in its unit: _mm, _vox (or _steps for coarse steps)."""
    names = [
        f"{part.name}.{f.name}"
        for part in dataclasses.fields(DenseConfig)
        for f in dataclasses.fields(getattr(DenseConfig(), part.name))
    ]
    sized = [n for n in names if any(w in n for w in ("spacing", "radius", "dilation", "step_", "range"))]
    assert sized, names
    assert all(n.endswith(("_mm", "_vox", "_steps")) for n in sized), sized


def test_every_old_flat_name_is_refused_naming_its_new_spelling():
    for old, new in RENAMED.items():
        value = value_at(make_config(), new)
        with pytest.raises(ConfigError, match=rf"{old} was renamed: use {new}\b"):
            make_config(**{old: value})
        assert value_at(make_config(**{new: value}), new) == value
    with pytest.raises(ConfigError, match="dense.instance.iterations"):
        make_config(dense={"adam_iterations": 3})


def test_the_renaming_table_covers_every_old_field():
    """Old names map one to one onto distinct new fields that exist; the new ones are named."""
    new = list(RENAMED.values())
    assert len(new) == len(set(new))
    fields = {
        f"dense.{part.name}.{f.name}"
        for part in dataclasses.fields(DenseConfig)
        for f in dataclasses.fields(getattr(DenseConfig(), part.name))
    }
    assert set(new) <= fields
    added_since = {  # fields new since the renaming
        "dense.region.foreground_margin_vox",
        "dense.instance.max_sample_points",
        "dense.instance.ct_mr_grid_spacing_mm",
        "dense.instance.ct_mr_regularisation_weight",
        "dense.instance.ct_mr_learning_rate",
        "dense.instance.ct_mr_final_learning_rate",
        "dense.matching.learned_refine_passes",  # the learned matcher's refinement (issue 14)
        "dense.matching.learned_refine_capture_range_vox",
        "dense.matching.learned_smooth_sigma_vox",
        "dense.matching.learned_pool_factor",
        "dense.instance.match_weight",  # the pull towards the fitted matches (issue 14, m4)
        "dense.instance.compare_air",  # air left out of the CT-MR similarity (issue 12, session 8)
        "dense.instance.tissue_margin_vox",
        "dense.instance.tissue_margin_mm",
        "dense.instance.ct_mr_compare_air",
        "dense.features.learned_descriptors",  # the stride-1 pixel descriptors (issue 14, session 9)
        "dense.features.pixel_weight",
        "dense.features.pixel_axes",
    }
    assert fields - set(new) - added_since == {"dense.features.backend"}  # old `dense.features`: a shorthand


def test_a_text_for_the_features_part_is_its_backend():
    short = make_config(**{"dense.features": "vmgga"})
    assert short == make_config(**{"dense.features.backend": "vmgga"})
    assert short.dense.features.backend == "vmgga"
    assert make_config(dense={"features": "dinov2"}).dense.features.backend == "dinov2"


def test_a_part_cannot_be_set_to_a_number():
    with pytest.raises(ConfigError, match="dense.instance is a group of settings: set its fields"):
        make_config(**{"dense.instance": 5})


def test_unknown_part_names_the_parts():
    with pytest.raises(
        ConfigError,
        match=r"unknown config section 'dense.adam'; expected one of \['dense.region', 'dense.features'",
    ):
        make_config(**{"dense.adam.iterations": 3})


def test_reports_keep_a_nested_config():
    plain = make_config().to_dict()
    assert plain["dense"]["instance"]["iterations"] == InstanceConfig().iterations
    assert plain["dense"]["instance"]["grid_spacing_mm"] == 12.0


def _dense_config_seen(fixed, moving, config: RegistrationConfig, monkeypatch) -> DenseConfig:
    """The dense settings register() hands the dense stage (affine and dense stage stubbed)."""
    import types

    import SimpleITK as sitk

    import vmgga.api as api

    seen: dict[str, DenseConfig] = {}

    def estimate_dense_field(fixed_work, moving_work, dense_config, **_):
        seen["dense"] = dense_config
        raise _Reached

    monkeypatch.setattr(
        api, "estimate_affine", lambda *a, **k: types.SimpleNamespace(transform=sitk.AffineTransform(3))
    )
    monkeypatch.setattr(api, "estimate_dense_field", estimate_dense_field)
    with pytest.raises(_Reached):
        api.register(fixed, moving, config, progress=False)
    return seen["dense"]


def test_a_ct_against_an_mr_gets_the_ct_mr_control_grid_and_penalty(monkeypatch):
    import numpy as np
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    ct_values = np.full((24, 24, 24), -1000.0)  # air around a head of soft tissue and bone (HU)
    ct_values[4:20, 4:20, 4:20] = rng.normal(40.0, 20.0, (16, 16, 16))
    ct_values[4:6, 4:20, 4:20] = 1000.0
    ct, mr = (
        sitk.GetImageFromArray(v.astype(np.float32)) for v in (ct_values, rng.random((24, 24, 24)) * 100)
    )
    fast = make_config("fast")
    for fixed, moving in ((ct, mr), (mr, ct)):
        dense = _dense_config_seen(fixed, moving, fast, monkeypatch)
        assert dense.instance.grid_spacing_mm == fast.dense.instance.ct_mr_grid_spacing_mm == 6.0
        assert dense.instance.regularisation_weight == fast.dense.instance.ct_mr_regularisation_weight == 1.0
        assert dense.instance.grid_spacing_vox == 4  # 6 mm on the 1.5 mm working grid
        assert (dense.instance.learning_rate, dense.instance.final_learning_rate) == (0.5, 0.1)
        assert dense.instance.compare_air is False  # the air around the head is left out
    same = _dense_config_seen(mr, mr, fast, monkeypatch)  # MR against MR: the preset's own
    assert same.instance.grid_spacing_mm == 12.0 and same.instance.regularisation_weight == 3.0
    assert same.instance.compare_air is True
    assert (same.instance.learning_rate, same.instance.final_learning_rate) == (0.1, 0.03)
    kept = make_config(
        "fast",
        **{
            f"dense.instance.ct_mr_{name}": 0
            for name in ("grid_spacing_mm", "regularisation_weight", "learning_rate", "final_learning_rate")
        },
    )
    dense = _dense_config_seen(ct, mr, kept, monkeypatch)  # 0: the rule is off
    assert dense.instance.grid_spacing_mm == 12.0 and dense.instance.regularisation_weight == 3.0
    air = make_config("fast", **{"dense.instance.ct_mr_compare_air": True})
    assert _dense_config_seen(ct, mr, air, monkeypatch).instance.compare_air is True
    no_air = make_config("fast", **{"dense.instance.compare_air": False})
    assert _dense_config_seen(mr, mr, no_air, monkeypatch).instance.compare_air is False


@pytest.mark.parametrize("value", ["false", "true", 0, 1, None])
def test_a_switch_must_be_true_or_false(value):
    """The text "false" would read as on: every bool setting refuses anything but True or False."""
    for dotted in (
        "affine.half_turn_search",
        "dense.instance.compare_air",
        "dense.matching.inverse_consistent",
    ):
        with pytest.raises(ConfigError, match=f"{dotted}=.* must be true or false"):
            make_config(**{dotted: value})
    assert make_config(**{"affine.half_turn_search": True}).affine.half_turn_search is True
