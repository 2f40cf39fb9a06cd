"""The methods a benchmark compares, each as ``(fixed_path, moving_path, out_dir, options) -> PeerResult``.

Every adapter starts from files, writes its transform into ``out_dir`` and returns the transform
that maps **fixed points to moving points** in LPS mm (ITK's resampling direction), so that one
harness evaluates all of them the same way. ``seconds`` runs from reading the input files to the
written transform file; library import time is excluded (the harness imports beforehand).

Conventions of the peers, checked by ``tests/benchmarks/test_bench_peer_directions.py`` on a
known translation:

* ANTs (``antspyx``): ``write_composite_transform=True`` gives ``<prefix>Composite.h5``, an ITK
  composite transform, fixed -> moving, LPS mm. SimpleITK reads it as it is.
* elastix (``itk-elastix``): the TransformParameters map fixed -> moving; transformix's
  "deformation field" is the displacement ``T(x) - x`` in LPS mm on the fixed grid.
* ConvexAdam (``convexAdam`` 0.2.0): ``convex_adam_pt`` needs both images on one grid and returns
  ``(X, Y, Z, 3)``: for each voxel of the input arrays, a displacement in voxels of the same array
  axes, with ``warped(x) = moving(x + disp(x))`` (``apply_convex`` uses ``map_coordinates``). We
  hand it ``(i, j, k)``-ordered arrays (as its own NIfTI path does), so channels are (i, j, k).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from vmgga import frames
from vmgga.errors import GeometryError, look_up_option


class Method(str, Enum):
    """Methods the benchmarks know."""

    IDENTITY = "identity"
    VMGGA_MIND = "vmgga-mind"  # ours, training-free: MIND cost volume + convex, Adam on MIND
    # ours, the learned path as `--matcher vmgga` runs it: learned matches, then Adam on MIND + the
    # network's stride-1 pixel descriptors (dense.features.backend auto; on MIND alone for a network
    # without a pixel head)
    VMGGA_LEARNED = "vmgga-learned"
    VMGGA_FUSED = "vmgga-fused"  # ours, as `--matcher fused`: learned and MIND matches fused, Adam as above
    VMGGA_LEARNED_START = "vmgga-learned-start"  # learned matches, then Adam on MIND only (before session 9)
    VMGGA_MIND_MATCHES = "vmgga-mind-matches"  # diagnostic: MIND cost volume fitted, no Adam
    VMGGA_LEARNED_MATCHES = "vmgga-learned-matches"  # diagnostic: learned matches fitted, no Adam
    VMGGA_HYBRID = "vmgga-hybrid"  # ours, learned VMGGA matcher, then Adam on MIND + learned features
    VMGGA_VMGGA = "vmgga-vmgga"  # ours, learned VMGGA matcher, then Adam on learned features only
    ANTS = "ants"  # ANTs SyNOnly, Mattes MI
    ELASTIX = "elastix"  # elastix default B-spline map, Mattes MI + bending energy
    CONVEXADAM = "convexadam"  # ConvexAdam MIND-SSC, default settings, fp32 CPU


@dataclass(frozen=True)
class PeerOptions:
    """Settings shared by all adapters."""

    threads: int = 2  # CPU threads for every method
    preset: str = "fast"  # our preset (vmgga-* methods)
    ants_iterations: tuple[int, ...] = (100, 70, 50, 20)  # SyN iterations per level
    matcher_weights: str | None = None  # VMGGA checkpoint of the learned vmgga-* methods; None = shipped
    elastix_iterations: int | None = None  # None: the default map's 256 per level (tests lower it)
    # extra dotted config overrides of the vmgga-* methods, after their variant's: (("dense.x", 1),)
    vmgga_overrides: tuple[tuple[str, Any], ...] = ()


@dataclass
class PeerResult:
    """What a method produced for one pair."""

    transform: sitk.Transform  # fixed -> moving, LPS mm
    seconds: float  # input files read -> transform file written
    transform_path: Path | None  # the file the method wrote (None: identity)
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. stage timings of ours


class PeerUnavailable(RuntimeError):
    """The method cannot run here (package or shipped weights missing); the harness skips it."""


PeerFn = Callable[[Path, Path, Path, PeerOptions], PeerResult]


# --- identity ---------------------------------------------------------------------------------


def run_identity(fixed_path: Path, moving_path: Path, out_dir: Path, options: PeerOptions) -> PeerResult:
    """No registration: the identity transform (TRE = the true displacement)."""
    return PeerResult(sitk.Transform(3, sitk.sitkIdentity), 0.0, None)


# --- ANTs -------------------------------------------------------------------------------------


def ants_registration(
    fixed_path: Path,
    moving_path: Path,
    out_prefix: Path,
    type_of_transform: str,
    reg_iterations: tuple[int, ...] | None = None,
) -> tuple[sitk.Transform, float, Path]:
    """One ANTs run (antspyx) with Mattes MI for SyN, written as a composite transform.

    Args:
        type_of_transform: ``SyNOnly`` (deformable only, on pre-aligned images) or ``SyN`` (rigid +
            affine + SyN), as ``ants.registration`` names them.
        reg_iterations: SyN iterations per level; None keeps ANTs' default.

    Returns:
        ``(fixed -> moving transform read by SimpleITK, seconds (reading included), Composite.h5 path)``.
    """
    import ants

    start = time.perf_counter()
    fixed = ants.image_read(str(fixed_path), pixeltype="float")
    moving = ants.image_read(str(moving_path), pixeltype="float")
    iterations = {} if reg_iterations is None else {"reg_iterations": reg_iterations}
    result = ants.registration(
        fixed,
        moving,
        type_of_transform=type_of_transform,
        syn_metric="mattes",
        outprefix=str(out_prefix),
        write_composite_transform=True,
        **iterations,
    )
    seconds = time.perf_counter() - start
    path = Path(result["fwdtransforms"])
    return sitk.ReadTransform(str(path)), seconds, path


def run_ants(fixed_path: Path, moving_path: Path, out_dir: Path, options: PeerOptions) -> PeerResult:
    """ANTs ``SyNOnly`` with Mattes MI (antspyx); returns its ``Composite.h5`` (fixed -> moving)."""
    transform, seconds, path = ants_registration(
        fixed_path, moving_path, out_dir / "ants_", "SyNOnly", options.ants_iterations
    )
    return PeerResult(transform, seconds, path)


# --- elastix ----------------------------------------------------------------------------------


def run_elastix(fixed_path: Path, moving_path: Path, out_dir: Path, options: PeerOptions) -> PeerResult:
    """elastix default B-spline map (Mattes MI); returns transformix's displacement field."""
    import itk

    start = time.perf_counter()
    fixed = itk.imread(str(fixed_path), itk.F)
    moving = itk.imread(str(moving_path), itk.F)
    parameters = itk.ParameterObject.New()
    parameter_map = parameters.GetDefaultParameterMap("bspline")
    if options.elastix_iterations is not None:
        parameter_map["MaximumNumberOfIterations"] = [str(options.elastix_iterations)]
    parameters.AddParameterMap(parameter_map)
    method = itk.ElastixRegistrationMethod.New(fixed, moving)
    method.SetParameterObject(parameters)
    # elastix reads ITK's global default; ``method.SetNumberOfThreads(2)`` segfaults in
    # itk-elastix 0.25.4 (reproduced on the stroke pair), so the global setting is used instead.
    itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(options.threads)
    method.SetLogToConsole(False)
    method.UpdateLargestPossibleRegion()
    field_image = itk.transformix_deformation_field(moving, method.GetTransformParameterObject())
    path = out_dir / "elastix_displacement_lps_mm.nii.gz"
    itk.imwrite(field_image, str(path))
    seconds = time.perf_counter() - start
    return PeerResult(_field_transform_from_file(path), seconds, path)


# --- ConvexAdam -------------------------------------------------------------------------------


def convexadam_disp_to_lps_mm(disp_xyz_ijk: np.ndarray, reference: sitk.Image) -> np.ndarray:
    """ConvexAdam output ``(X, Y, Z, 3)`` (voxels, channels i, j, k) -> ``(D, H, W, 3)`` LPS mm."""
    disp_zyx_ijk = frames.array_zyx_from_xyz(np.asarray(disp_xyz_ijk, dtype=np.float64))  # (D, H, W, 3)
    return frames.disp_lps_from_ijk(np.moveaxis(disp_zyx_ijk, -1, 0), frames.geometry_of(reference))


def run_convexadam(fixed_path: Path, moving_path: Path, out_dir: Path, options: PeerOptions) -> PeerResult:
    """ConvexAdam MIND-SSC, default settings, fp32 on the CPU; both images must share one grid."""
    import torch
    from convexAdam.convex_adam_MIND import convex_adam_pt

    start = time.perf_counter()
    fixed = sitk.ReadImage(str(fixed_path), sitk.sitkFloat32)
    moving = sitk.ReadImage(str(moving_path), sitk.sitkFloat32)
    _require_same_grid(fixed, moving, "ConvexAdam")
    disp = convex_adam_pt(
        torch.from_numpy(frames.xyz_from_array_zyx(sitk.GetArrayFromImage(fixed))),
        torch.from_numpy(frames.xyz_from_array_zyx(sitk.GetArrayFromImage(moving))),
        dtype=torch.float32,
        device=torch.device("cpu"),
    )
    path = out_dir / "convexadam_displacement_lps_mm.nii.gz"
    _write_field(convexadam_disp_to_lps_mm(disp, fixed), fixed, path)
    seconds = time.perf_counter() - start
    return PeerResult(_field_transform_from_file(path), seconds, path)


# --- ours -------------------------------------------------------------------------------------


#: Dense-stage settings of each of our methods (on top of the preset).
VMGGA_VARIANTS: dict[str, dict[str, Any]] = {
    Method.VMGGA_MIND.value: {"dense.features.backend": "mind", "dense.matching.matcher": "cost_volume"},
    Method.VMGGA_LEARNED.value: {"dense.matching.matcher": "vmgga"},
    Method.VMGGA_FUSED.value: {"dense.matching.matcher": "fused"},
    Method.VMGGA_LEARNED_START.value: {"dense.features.backend": "mind", "dense.matching.matcher": "vmgga"},
    Method.VMGGA_HYBRID.value: {"dense.features.backend": "mind+vmgga", "dense.matching.matcher": "vmgga"},
    Method.VMGGA_MIND_MATCHES.value: {
        "dense.matching.matcher": "cost_volume",
        "dense.instance.iterations": 0,
    },
    Method.VMGGA_LEARNED_MATCHES.value: {"dense.matching.matcher": "vmgga", "dense.instance.iterations": 0},
    Method.VMGGA_VMGGA.value: {"dense.features.backend": "vmgga", "dense.matching.matcher": "vmgga"},
}


def uses_matcher_weights(method: str) -> bool:
    """Whether ``method`` needs a VMGGA checkpoint (the learned matcher or features)."""
    if method not in VMGGA_VARIANTS:
        return False
    from vmgga.config import make_config
    from vmgga.matching.registry import needs_matcher_network

    return needs_matcher_network(make_config(**VMGGA_VARIANTS[method]).dense)


def parse_overrides(items: list[str]) -> tuple[tuple[str, Any], ...]:
    """``["dense.instance.iterations=50", ...]`` -> ``(("dense.instance.iterations", 50), ...)`` (Python literals
    or text)."""
    import ast

    pairs = []
    for item in items:
        key, _, text = item.partition("=")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        pairs.append((key, value))
    return tuple(pairs)


def run_vmgga(method: str) -> PeerFn:
    """Adapter for ``vmgga.register`` with the dense settings :data:`VMGGA_VARIANTS` gives ``method``."""

    def run(fixed_path: Path, moving_path: Path, out_dir: Path, options: PeerOptions) -> PeerResult:
        register, write_outputs, make_config = _vmgga_api()
        overrides = dict(VMGGA_VARIANTS[method])
        if uses_matcher_weights(method) and options.matcher_weights:
            overrides["dense.features.weights"] = options.matcher_weights
        overrides.update(options.vmgga_overrides)
        config = make_config(options.preset, num_threads=options.threads, **overrides)
        start = time.perf_counter()
        result = register(str(fixed_path), str(moving_path), config, progress=False)
        paths = write_outputs(result, out_dir / method.replace("-", "_"))
        seconds = time.perf_counter() - start
        path = Path(paths["transform"])
        notes = {"timings_s": result.report.get("timings_s", result.report.get("timings"))}
        return PeerResult(sitk.ReadTransform(str(path)), seconds, path, notes)

    return run


def _vmgga_api():
    """``(register, write_outputs, make_config)`` or :class:`PeerUnavailable` before the API exists."""
    import vmgga
    from vmgga.config import make_config

    register = getattr(vmgga, "register", None)
    write_outputs = getattr(vmgga, "write_outputs", None)
    if register is None or write_outputs is None:
        try:
            from vmgga.api import register, write_outputs
        except ImportError as error:
            raise PeerUnavailable(f"vmgga.register is not available yet ({error})") from error
    return register, write_outputs, make_config


# --- registry ---------------------------------------------------------------------------------

PEERS: dict[str, PeerFn] = {
    Method.IDENTITY.value: run_identity,
    **{method: run_vmgga(method) for method in VMGGA_VARIANTS},
    Method.ANTS.value: run_ants,
    Method.ELASTIX.value: run_elastix,
    Method.CONVEXADAM.value: run_convexadam,
}

#: Modules imported before timing starts (so that timings exclude imports).
_IMPORTS = {"ants": ["ants"], "elastix": ["itk"], "convexadam": ["convexAdam.convex_adam_MIND"]}


def parse_methods(text: str) -> list[str]:
    """``"identity,ants"`` -> validated method names, in the given order."""
    return [look_up_option(name.strip(), Method, "method") for name in text.split(",") if name.strip()]


def preload(methods: list[str], options: PeerOptions | None = None) -> dict[str, str]:
    """Import each method's library once; return ``{method: reason}`` for those that cannot run."""
    import importlib

    unavailable = {}
    for method in methods:
        try:
            for module in _IMPORTS.get(method, []):
                importlib.import_module(module)
            if method.startswith("vmgga-"):
                _vmgga_api()
            if uses_matcher_weights(method):
                _check_matcher_weights(options.matcher_weights if options else None)
        except (ImportError, PeerUnavailable) as error:
            unavailable[method] = str(error)
    return unavailable


def _check_matcher_weights(path: str | None) -> None:
    """Raise :class:`PeerUnavailable` when no VMGGA checkpoint is given and none is shipped."""
    from vmgga.errors import InputError
    from vmgga.models.checkpoint import resolve_weights

    try:
        resolve_weights(path)
    except InputError as error:
        raise PeerUnavailable(str(error)) from error


# --- helpers ----------------------------------------------------------------------------------


def _require_same_grid(fixed: sitk.Image, moving: sitk.Image, who: str) -> None:
    """Raise :class:`GeometryError` unless both images share size, spacing, origin and direction."""
    same = (
        fixed.GetSize() == moving.GetSize()
        and np.allclose(fixed.GetSpacing(), moving.GetSpacing())
        and np.allclose(fixed.GetOrigin(), moving.GetOrigin(), atol=1e-4)
        and np.allclose(fixed.GetDirection(), moving.GetDirection(), atol=1e-6)
    )
    if not same:
        raise GeometryError(f"{who} needs fixed and moving on one grid; resample the moving image first")


def _write_field(disp_lps_mm: np.ndarray, reference: sitk.Image, path: Path) -> None:
    """Write a ``(D, H, W, 3)`` LPS mm displacement field on ``reference``'s grid."""
    image = frames.image_from_array(
        np.asarray(disp_lps_mm, dtype=np.float32), frames.geometry_of(reference), is_vector=True
    )
    sitk.WriteImage(image, str(path))


def _field_transform_from_file(path: Path) -> sitk.Transform:
    """Fixed -> moving ``DisplacementFieldTransform`` from a displacement image file (LPS mm)."""
    return sitk.DisplacementFieldTransform(sitk.ReadImage(str(path), sitk.sitkVectorFloat64))
