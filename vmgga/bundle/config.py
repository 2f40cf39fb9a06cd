"""Bundle settings -> the :class:`~vmgga.config.RegistrationConfig` that ``vmgga register`` would build."""

from __future__ import annotations

import dataclasses
from typing import Any

from vmgga.config import RegistrationConfig, make_config
from vmgga.device import resolve_device
from vmgga.errors import ConfigError


def as_bool(value: bool | str | int, name: str) -> bool:
    """A command-line flag as a bool: ``True``/``False``, ``"true"``/``"false"``, ``1``/``0``.

    Raises:
        ConfigError: for any other value (``bool("false")`` would silently be True).
    """
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name}={value!r} is not a yes/no value; use true or false")


def registration_config(
    preset: str = "fast",
    device: str = "auto",
    features: str | None = None,
    matcher_weights: str | None = None,
    seed: int | None = None,
    overrides: dict[str, Any] | None = None,
    matcher: str | None = None,
) -> RegistrationConfig:
    """The :class:`RegistrationConfig` of a bundle run (the same one ``vmgga register`` would build).

    Args:
        preset: ``fast``, ``accurate`` or ``inter_patient`` (:class:`vmgga.config.Preset`).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (:func:`vmgga.device.resolve_device`).
        features: ``mind`` (training-free), ``vmgga`` or ``dinov2``; None keeps the preset's.
        matcher_weights: VMGGA checkpoint, used (and recorded) only when the configuration runs the
            network (learned matcher or features); None keeps the package's weights.
        seed: Random seed; None keeps the default.
        matcher: ``fused`` (the presets'), ``vmgga`` or ``cost_volume`` (training-free); None keeps the preset's.
        overrides: More :func:`vmgga.make_config` overrides, dotted (``{"dense.instance.iterations": 20}``)
            or nested (``{"dense": {...}}``).
    """
    values: dict[str, Any] = dict(overrides or {})
    values["device"] = resolve_device(device)
    if features is not None:
        values["dense.features.backend"] = features
    if matcher is not None:
        values["dense.matching.matcher"] = matcher
    if seed is not None:
        values["seed"] = int(seed)
    top = {k: v for k, v in values.items() if "." not in k and not isinstance(v, dict)}
    sections = {k: v for k, v in values.items() if k not in top}
    config = make_config(preset, **sections)
    _check_top_level_fields(top)
    from vmgga.matching.registry import needs_matcher_network

    if matcher_weights is not None and needs_matcher_network(config.dense):
        features = dataclasses.replace(config.dense.features, weights=str(matcher_weights))
        config = dataclasses.replace(config, dense=dataclasses.replace(config.dense, features=features))
    return dataclasses.replace(config, **top)


def _check_top_level_fields(values: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` for a key that is not a top-level :class:`RegistrationConfig` field."""
    names = {f.name for f in dataclasses.fields(RegistrationConfig) if f.name != "preset"}
    names -= {"preprocess", "affine", "dense"}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown config fields {unknown}; top-level fields are {sorted(names)}")
