"""``vmgga apply TRANSFORM IMAGE --reference FIXED -o OUT``: warp an image or a label map."""

from __future__ import annotations

import argparse
from pathlib import Path

from vmgga.cli.checks import captured_library_output, check_output_file, library_write_failure
from vmgga.export.apply import apply_transform
from vmgga.export.itk_transform import read_transform
from vmgga.io.atomic import check_not_an_input, write_image_atomic
from vmgga.io.images import read_image

HELP = "resample an image or label map through a transform (fixed -> moving) onto the fixed grid"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``vmgga apply``."""
    parser.add_argument("transform", help="ITK transform file, e.g. OUT/transform.h5 from vmgga register")
    parser.add_argument("image", help="image or label map to warp (file or DICOM folder)")
    parser.add_argument("--reference", required=True, help="the fixed image (defines the output grid)")
    parser.add_argument(
        "-o", "--output", required=True, help="output image file: .nii.gz, .nii, .nrrd or .mha"
    )
    parser.add_argument("--labels", action="store_true", help="label map: nearest neighbour, integer output")


def run(args: argparse.Namespace) -> int:
    """Warp and write atomically; never overwrite an input."""
    output = Path(args.output)
    check_not_an_input([output], [args.transform, args.image, args.reference])
    check_output_file(output)
    transform = read_transform(args.transform)
    image = read_image(args.image, role="image to warp").image
    reference = read_image(args.reference, role="reference").image
    warped = apply_transform(transform, image, reference, labels=args.labels)
    output.parent.mkdir(parents=True, exist_ok=True)
    with captured_library_output() as library_text:
        try:
            write_image_atomic(warped, output)
            return 0
        except RuntimeError as error:  # a C++ writer failed (full disk...): one line, not a stack
            failure = error
    raise library_write_failure(failure, "".join(library_text), output.parent) from failure
