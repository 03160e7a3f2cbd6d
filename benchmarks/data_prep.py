"""Seconds of the data preparation steps that were once timed inside tests: the HHA encoding
of one NYUDv2-sized depth image (480x640) and writing the embedded shapes data set (240 train
and 60 val 64x64 PNG pairs, the main job's data).

Their goals (HHA under 1 s an image, the shapes data set under 5 s) are checked here, as
ratios of the measured median to the goal, not by timed assertions in the test suite (where a
busy 2-core machine made them fail).

Usage:
    python benchmarks/data_prep.py [--repeats 5] [--output_dir benchmarks/results]

Writes benchmarks/results/data_prep.md and .json.
"""

import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import _outputs  # noqa: E402
from _outputs import (add_report_flags, cpu_line, median_seconds,  # noqa: E402
                      refuse_to_overwrite, save_report)

GOALS = {"hha_480x640": 1.0, "shapes_240_60": 5.0}  # seconds


def wall_and_floor_depth(height=480, width=640):
    """Metres to a wall 3 m away whose lower third is a floor rising towards the camera, with
    1 cm of noise: a scene whose normals and heights HHA must estimate."""
    rows = np.arange(height, dtype="float64")[:, None]
    depth = np.full((height, width), 3.0)
    floor = rows > 2 * height / 3
    depth = np.where(floor, 3.0 - (rows - 2 * height / 3) / height * 4.0, depth)
    return depth + np.random.default_rng(0).normal(0, 0.01, (height, width))


def main():
    parser = _outputs.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=_outputs.positive_int, default=5)
    add_report_flags(parser, "data_prep")
    args = parser.parse_args()
    refuse_to_overwrite(os.path.join(args.output_dir, args.name), args.overwrite)

    from keras_fcn.datasets import hha, shapes

    depth = wall_and_floor_depth()
    with tempfile.TemporaryDirectory() as folder:
        seconds = {
            "hha_480x640": median_seconds(lambda: hha.compute_hha(depth), args.repeats),
            "shapes_240_60": median_seconds(lambda: shapes.make_shapes_dataset(
                os.path.join(folder, f"s{time.perf_counter_ns()}"), num_train=240, num_val=60,
                size=64), args.repeats),
        }
    cpu = cpu_line()
    lines = [f"# Data preparation time ({time.strftime('%Y-%m-%d')})", "", f"CPU: {cpu}", "",
             "| step | median s | goal s | median / goal |", "|---|---|---|---|"]
    for name, value in seconds.items():
        lines.append(f"| {name} | {value:.3f} | {GOALS[name]:.1f} | {value / GOALS[name]:.2f} |")
    markdown = "\n".join(lines)
    print(markdown)
    save_report(args.output_dir, args.name, markdown,
                {"cpu": cpu, "repeats": args.repeats, "seconds": seconds, "goals": GOALS})


if __name__ == "__main__":
    main()
