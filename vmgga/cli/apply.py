"""``vmgga apply TRANSFORM IMAGE --reference FIXED -o OUT``: warp an image or a label map."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "resample an image or label map through a transform (fixed -> moving) onto the fixed grid"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``vmgga apply``."""
    parser.add_argument("transform", help="ITK transform file, e.g. OUT/transform.h5 from vmgga register")
    parser.add_argument("image", help="image or label map to warp (file or DICOM folder)")
    parser.add_argument("--reference", required=True, help="the fixed image (defines the output grid)")
    parser.add_argument("-o", "--output", required=True, help="output image file, e.g. warped.nii.gz")
    parser.add_argument(
        "--labels",
        action="store_true",
        help="label map: integer values (an all-zero map is fine), nearest neighbour, integer output",
    )


def run(args: argparse.Namespace) -> int:
    """Warp and write atomically; never overwrite an input."""
    from vmgga.cli.checks import check_output_file
    from vmgga.io.paths import check_not_an_input

    output = Path(args.output)
    check_not_an_input([output], [args.transform, args.image, args.reference])  # before heavy imports
    check_output_file(output)  # a folder, an unknown suffix or a read-only folder: before any work
    from vmgga.export.apply import apply_transform
    from vmgga.export.itk_transform import read_transform
    from vmgga.io.atomic import write_image_atomic
    from vmgga.io.images import read_image
    from vmgga.io.labels import read_label_map

    transform = read_transform(args.transform)
    if args.labels:
        image = read_label_map(args.image, role="label map to warp")
    else:
        image = read_image(args.image, role="image to warp").image
    reference = read_image(args.reference, role="reference").image
    output.parent.mkdir(parents=True, exist_ok=True)
    write_image_atomic(apply_transform(transform, image, reference, labels=args.labels), output)
    return 0
