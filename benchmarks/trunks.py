"""The paper's Table 1 trunks in one run: parameters and forward time of FCN-AlexNet,
FCN-VGG16 and FCN-GoogLeNet (all FCN-32s).

Batch 1, 500x500 (the paper's size), 2 threads, random weights (the time does not depend on
their values), a ``tf.function`` graph of each model; after one warm-up call each, the models
run interleaved ``--repeats`` times so that background load hits them alike, and the table
reports the median. The machine may be shared: the load average is recorded before and after.

Usage:
    python benchmarks/trunks.py [--size 500] [--repeats 3] [--threads 2] [--overwrite]

Writes benchmarks/results/trunks.md and .json.
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import _outputs  # noqa: E402
from _outputs import add_output_dir, refuse_to_overwrite, save_report  # noqa: E402

TRUNKS = ("alexnet", "vgg16", "googlenet")
NAMES = {"alexnet": "FCN-AlexNet", "vgg16": "FCN-VGG16", "googlenet": "FCN-GoogLeNet"}
# The paper's Table 1 (Long et al., CVPR 2015): parameters, forward time at 500x500 on an
# NVIDIA Tesla K40c, and mean IU on PASCAL VOC 2011 validation (FCN-32s).
PAPER = {"alexnet": ("57M", 50, 39.8), "vgg16": ("134M", 210, 56.0),
         "googlenet": ("6M", 59, 42.5)}


def parse_args():
    parser = _outputs.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, default in (("--size", 500), ("--repeats", 3), ("--threads", 2),
                          ("--num_classes", 21)):
        parser.add_argument(flag, type=_outputs.positive_int, default=default)
    add_output_dir(parser)
    parser.add_argument("--overwrite", action="store_true")
    return parser.parse_args()


def runners(size, num_classes, threads):
    """Per trunk: (parameter count, a function running one forward pass)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from keras_fcn.models import build_fcn

    image = tf.constant(np.random.default_rng(0).uniform(-100, 100, (1, size, size, 3)),
                        tf.float32)
    out = {}
    for trunk in TRUNKS:
        model = build_fcn("32s", num_classes, (size, size, 3), weights=None, backbone=trunk)
        forward = tf.function(lambda x, model=model: model(x, training=False))
        out[trunk] = (model.count_params(), lambda f=forward: f(image).numpy())
    return out


def time_interleaved(functions, repeats):
    """Median seconds per function, one warm-up call each, runs interleaved."""
    for run in functions.values():
        run()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, run in functions.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}, times


def markdown(rows, args, machine, loads):
    lines = [
        f"# Table 1 trunks: parameters and forward time at {args.size}x{args.size}",
        "",
        f"FCN-32s, batch 1, {args.threads} threads, `tf.function` graph, median of "
        f"{args.repeats} interleaved runs after one warm-up; random weights, "
        f"{args.num_classes} classes. {machine}. Load average (1, 5, 15 min) before "
        f"{loads[0]}, after {loads[1]}: the machine was shared with other jobs, so the "
        "times are upper bounds; their ratios are the figure to read.",
        "",
        "| trunk | parameters | forward (ms) | speed-up over FCN-VGG16 | paper: parameters | "
        "paper: forward on a K40 GPU (ms) | paper: VOC11 val mean IU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    vgg = next(row for row in rows if row["trunk"] == "vgg16")["seconds"]
    for row in rows:
        params, paper_ms, paper_iu = PAPER[row["trunk"]]
        lines.append(
            f"| {NAMES[row['trunk']]} | {row['parameters'] / 1e6:.1f}M | "
            f"{row['seconds'] * 1e3:.0f} | {vgg / row['seconds']:.1f}x | {params} | "
            f"{paper_ms} | {paper_iu} |")
    lines += ["", "Parameters include the frozen bilinear `upscore` (21 classes: 1.75M with the "
              "63x63 kernel of FCN-AlexNet and FCN-GoogLeNet, 1.81M with FCN-VGG16's 64x64).",
              "", "Command: `python benchmarks/trunks.py`"]
    return "\n".join(lines)


def main():
    args = parse_args()
    output = os.path.join(args.output_dir, "trunks")
    refuse_to_overwrite(output, args.overwrite)
    from keras_fcn.runtime import cpu_info, describe

    info = cpu_info()
    load_before = os.getloadavg()
    models = runners(args.size, args.num_classes, args.threads)
    medians, samples = time_interleaved({k: run for k, (_, run) in models.items()}, args.repeats)
    loads = [tuple(round(x, 2) for x in load) for load in (load_before, os.getloadavg())]
    rows = [{"trunk": trunk, "parameters": models[trunk][0], "seconds": medians[trunk],
             "samples": samples[trunk]} for trunk in TRUNKS]
    text = markdown(rows, args, describe(info), loads)
    save_report(args.output_dir, "trunks", text, {
        "size": args.size, "threads": args.threads, "repeats": args.repeats,
        "num_classes": args.num_classes, "cpu": info, "load_average": loads, "rows": rows})
    print(text)


if __name__ == "__main__":
    main()
