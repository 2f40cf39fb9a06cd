"""``vmgga match IMG0 IMG1 -o OUT``: dense 2D matching of two slices (PNG or 2D NIfTI).

Writes into ``OUT``: ``flow.npy`` (``(2, H, W)`` float32, channels (x, y) = column, row offsets in
pixels from each pixel of IMG0 to its match in IMG1) or, for NIfTI/NRRD/MHA inputs, ``flow.nii.gz``
(a 2-component vector image on IMG0's grid, same units), ``confidence.png`` (colour map, 0 = dark
purple, 1 = yellow), ``matches.png`` (IMG0 | IMG1 side by side, lines between a grid of matches
coloured by confidence) and ``matches.json`` (those correspondences with their confidence).

The confidence is the probability that a match is within 2 px; with the default setting (refine +
smoothing) and the shipped weights it is calibrated on real slices by the map shipped beside the
weights (:mod:`vmgga.models.calibration`; ``matches.json`` records it under ``matcher.calibration``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

# Light imports only: the parser (and `vmgga match --help`) must not load torch, OpenCV or numpy;
# each function imports what it uses.
from vmgga.errors import GeometryError, InputError, IntensityError
from vmgga.extras import import_optional, require_extra
from vmgga.io.paths import check_not_an_input

if TYPE_CHECKING:
    import numpy as np
    import SimpleITK as sitk

    from vmgga.models.matcher2d import Matcher2D
    from vmgga.models.types import MatchResult

HELP = "match two 2D images (PNG or 2D NIfTI): dense flow, confidence, correspondences, pictures"

_PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_COLOUR_MAP = "viridis"
#: Default search (px) of the second, local matching pass (benchmarks/matcher_2d_real.py).
REFINE_PX = 12.0
#: Default Gaussian sigma (px) of the confidence-weighted smoothing of the second pass's flow.
SMOOTH_PX = 8.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``vmgga match``."""
    parser.add_argument("image0", help="first image (PNG/JPEG/TIFF, or a 2D NIfTI/NRRD/MHA)")
    parser.add_argument("image1", help="second image, matched from image0")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--backend", default="vmgga", choices=["vmgga", "dinov2", "mind"],
                        help="vmgga: trained network; mind: training-free MIND-SSC; dinov2: local DINOv2")  # fmt: skip
    parser.add_argument("--weights", default=None, help="matcher checkpoint (default: the shipped weights)")
    parser.add_argument("--dinov2-path", default=None, help="local DINOv2 model directory (backend dinov2)")
    parser.add_argument("--max-displacement", type=float, default=None, help="coarse search limit (px)")
    parser.add_argument(
        "--refine",
        type=float,
        default=REFINE_PX,
        metavar="PX",
        help="second local pass after a robust affine of the first matches, searching PX pixels "
        f"(default {REFINE_PX:g}; 0: one pass)",
    )
    parser.add_argument(
        "--smooth",
        type=float,
        default=SMOOTH_PX,
        metavar="PX",
        help=f"with --refine: smooth the second flow by confidence, Gaussian sigma PX (default {SMOOTH_PX:g}; 0: off)",
    )
    parser.add_argument("--grid-step", type=int, default=16, help="spacing (px) of the listed matches")
    parser.add_argument(
        "--min-confidence", type=float, default=0.0, help="list only matches at least this sure"
    )
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")


def run(args: argparse.Namespace) -> int:
    """Read, match, write the four outputs atomically; return 0."""
    _cv2()  # a missing extra stops here, before any work
    if args.backend == "dinov2":
        require_extra("dinov2", feature="--backend dinov2")
    import torch

    from vmgga.io.atomic import write_json_atomic
    from vmgga.models.matcher2d import Matcher2D

    paths = [Path(args.image0), Path(args.image1)]
    output = Path(args.output)
    check_not_an_input([output], paths)
    images = [read_slice(p) for p in paths]
    refine = args.refine if args.refine and args.refine > 0 else None
    smooth = args.smooth if refine and args.smooth and args.smooth > 0 else None  # only with --refine
    matcher = Matcher2D(
        args.backend, args.weights, args.dinov2_path, args.device, args.max_displacement, refine, smooth
    )
    result = matcher(*(torch.from_numpy(normalise(im.array))[None, None] for im in images))
    output.mkdir(parents=True, exist_ok=True)
    flow, confidence = result.flow_px[0].cpu().numpy(), result.confidence[0, 0].cpu().numpy()
    written = [write_flow(flow, images[0], output)]
    written.append(write_picture(colour(confidence), output / "confidence.png"))
    matches = grid_matches(flow, confidence, args.grid_step, args.min_confidence)
    pictures = [normalise(im.array) for im in images]
    written.append(write_picture(draw_matches(*pictures, matches), output / "matches.png"))
    written.append(
        write_json_atomic(matches_document(args, matcher, result, matches), output / "matches.json")
    )
    print("\n".join(str(p) for p in written))
    return 0


class Slice:
    """A 2D image: ``array (H, W)`` float32 (rows, columns) and its SimpleITK image if it had one."""

    def __init__(self, array: np.ndarray, image: sitk.Image | None) -> None:
        self.array, self.image = array, image


def read_slice(path: Path) -> Slice:
    """Read a 2D picture or a 2D (or single-slice 3D) medical image.

    Raises:
        InputError: missing or unreadable file. GeometryError: not 2D. IntensityError: NaN/constant.
    """
    import numpy as np
    import SimpleITK as sitk

    if not path.is_file():
        raise InputError(f"image '{path}' does not exist")
    if path.suffix.lower() in _PICTURE_SUFFIXES:
        array, image = _read_picture(path), None
    else:
        image = _read_medical(path)
        array = sitk.GetArrayFromImage(image).astype(np.float32)
    if not np.isfinite(array).all():
        raise IntensityError(f"image '{path}' has NaN or infinite values")
    if float(array.max() - array.min()) <= 0:
        raise IntensityError(f"image '{path}' is constant; nothing to match")
    return Slice(array, image)


def _read_picture(path: Path) -> np.ndarray:
    cv2 = _cv2()
    import numpy as np

    picture = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if picture is None:
        raise InputError(f"cannot read '{path}' as a picture")
    if picture.ndim == 3:
        picture = cv2.cvtColor(picture[..., :3], cv2.COLOR_BGR2GRAY)
    return picture.astype(np.float32)


def _read_medical(path: Path) -> sitk.Image:
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(f"cannot read '{path}': {str(error).strip().splitlines()[-1]}") from error
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise GeometryError(
            f"'{path}' has {image.GetNumberOfComponentsPerPixel()} components; need a scalar image"
        )
    if image.GetDimension() == 3 and 1 in image.GetSize():
        axis = image.GetSize().index(1)
        size = list(image.GetSize())
        size[axis] = 0
        image = sitk.Extract(image, size, [0, 0, 0])
    if image.GetDimension() != 2:
        raise GeometryError(
            f"'{path}' is {image.GetDimension()}D of size {image.GetSize()}; vmgga match needs 2D"
        )
    return image


def normalise(array: np.ndarray) -> np.ndarray:
    """Robust [0, 1] scaling (0.5 and 99.5 percentiles), float32."""
    import numpy as np

    low, high = np.percentile(array, [0.5, 99.5])
    if high <= low:
        low, high = float(array.min()), float(array.max())
    return np.clip((array - low) / (high - low), 0, 1).astype(np.float32)


def write_flow(flow: np.ndarray, first: Slice, output: Path) -> Path:
    """``flow.nii.gz`` on image0's grid when it is a medical image, else ``flow.npy``."""
    import numpy as np
    import SimpleITK as sitk

    from vmgga.io.atomic import atomic_write, write_image_atomic

    if first.image is not None:
        vector = sitk.GetImageFromArray(np.moveaxis(flow, 0, -1).astype(np.float32), isVector=True)
        vector.CopyInformation(first.image)
        return write_image_atomic(vector, output / "flow.nii.gz")
    return atomic_write(output / "flow.npy", lambda tmp: np.save(tmp, flow.astype(np.float32)))


def colour(values: np.ndarray) -> np.ndarray:
    """``(H, W)`` in [0, 1] -> ``(H, W, 3)`` uint8 BGR (viridis)."""
    import numpy as np
    from matplotlib import colormaps

    rgb = colormaps[_COLOUR_MAP](np.clip(values, 0, 1))[..., :3]
    return (rgb[..., ::-1] * 255).round().astype(np.uint8)


def write_picture(picture: np.ndarray, path: Path) -> Path:
    """Write a BGR/grey uint8 picture atomically (format from the suffix)."""
    from vmgga.io.atomic import atomic_write

    cv2 = _cv2()

    def writer(tmp: Path) -> None:
        if not cv2.imwrite(str(tmp), picture):
            raise InputError(f"cannot write the picture {path}")

    return atomic_write(path, writer)


def grid_matches(flow: np.ndarray, confidence: np.ndarray, step: int, min_confidence: float) -> list[dict]:
    """Matches of the pixels on a ``step`` grid: ``{"x0", "y0", "x1", "y1", "confidence"}``."""
    h, w = confidence.shape
    matches = []
    for y in range(step // 2, h, step):
        for x in range(step // 2, w, step):
            if confidence[y, x] >= min_confidence:
                matches.append({"x0": x, "y0": y, "x1": round(float(x + flow[0, y, x]), 3),
                                "y1": round(float(y + flow[1, y, x]), 3),
                                "confidence": round(float(confidence[y, x]), 4)})  # fmt: skip
    return matches


def draw_matches(
    image0: np.ndarray, image1: np.ndarray, matches: list[dict], max_lines: int = 150
) -> np.ndarray:
    """IMG0 | IMG1 side by side (grey, [0, 1] inputs) with lines for the ``max_lines`` most confident
    matches, coloured by confidence."""
    import numpy as np

    cv2 = _cv2()
    height = max(image0.shape[0], image1.shape[0])
    canvas = np.zeros((height, image0.shape[1] + image1.shape[1]), np.uint8)
    canvas[: image0.shape[0], : image0.shape[1]] = (image0 * 255).astype(np.uint8)
    canvas[: image1.shape[0], image0.shape[1] :] = (image1 * 255).astype(np.uint8)
    picture = cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)
    for match in sorted(matches, key=lambda m: m["confidence"])[-max_lines:]:
        start = (int(match["x0"]), int(match["y0"]))
        end = (int(round(match["x1"])) + image0.shape[1], int(round(match["y1"])))
        line_colour = tuple(int(c) for c in colour(np.array([[match["confidence"]]]))[0, 0])
        cv2.line(picture, start, end, line_colour, 1, cv2.LINE_AA)
        cv2.circle(picture, start, 2, line_colour, -1)
    return picture


def matches_document(args, matcher: Matcher2D, result: MatchResult, matches: list[dict]) -> dict:
    """Contents of ``matches.json``."""
    flow_file = "flow.npy" if Path(args.image0).suffix.lower() in _PICTURE_SUFFIXES else "flow.nii.gz"
    return {
        "image0": str(args.image0),
        "image1": str(args.image1),
        "matcher": matcher.describe(),
        "convention": "pixel (x0, y0) of image0 (x = column, y = row) matches (x1, y1) of image1",
        "flow_file": flow_file,
        "mean_confidence": float(result.confidence.mean()),
        "grid_step_px": args.grid_step,
        "matches": matches,
    }


def _cv2():
    """OpenCV (the ``match`` extra), or a :class:`~vmgga.extras.MissingExtraError` naming it."""
    return import_optional("cv2", extra="match", feature="2D matching")
