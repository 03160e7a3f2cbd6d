"""Forward time of our Keras FCN-8s against an equivalent PyTorch FCN-8s, in one run.

Batch 1, 500x500 (the paper's PASCAL size), 2 threads for both frameworks, random weights
(the time does not depend on their values). Keras is timed in several modes (eager call,
``tf.function`` graph, XLA ``jit_compile``, ``model.predict``); runs of the frameworks are
interleaved so that background load hits both alike, and the table reports medians and the
ratio torch / keras (above 1 means ours is faster).

Usage:
    python benchmarks/inference.py [--size 500] [--repeats 5] [--threads 2]

Writes benchmarks/results/inference.md and .json.
"""

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from _outputs import save_report  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--num_classes", type=int, default=21)
    parser.add_argument("--output_dir", default=os.path.join(os.path.dirname(__file__), "results"))
    return parser.parse_args()


def keras_runners(size, num_classes, threads):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras_fcn

    model = keras_fcn.build_fcn8s(num_classes=num_classes, input_shape=(size, size, 3), weights=None)
    image = tf.constant(np.random.default_rng(0).uniform(-100, 100, (1, size, size, 3)), tf.float32)
    graph = tf.function(lambda x: model(x, training=False))
    xla = tf.function(lambda x: model(x, training=False), jit_compile=True)
    return {
        "keras eager call": lambda: model(image, training=False).numpy(),
        "keras tf.function": lambda: graph(image).numpy(),
        "keras tf.function + XLA": lambda: xla(image).numpy(),
        "keras model.predict": lambda: model.predict(image, verbose=0),
    }


def torch_runner(size, num_classes, threads):
    """An FCN-8s in PyTorch with the reference layers (pad 100, ceil pools, crops 5/9/31)."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return None
    torch.set_num_threads(threads)

    class TorchFCN8s(nn.Module):
        def __init__(self):
            super().__init__()
            layers, cin = [], 3
            self.blocks = nn.ModuleList()
            for block, (width, count) in enumerate(zip((64, 128, 256, 512, 512), (2, 2, 3, 3, 3))):
                layers = []
                for i in range(count):
                    pad = 100 if (block, i) == (0, 0) else 1
                    layers += [nn.Conv2d(cin, width, 3, padding=pad), nn.ReLU(inplace=True)]
                    cin = width
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
                self.blocks.append(nn.Sequential(*layers))
            self.fc = nn.Sequential(nn.Conv2d(512, 4096, 7), nn.ReLU(inplace=True), nn.Dropout2d(),
                                    nn.Conv2d(4096, 4096, 1), nn.ReLU(inplace=True), nn.Dropout2d())
            self.score_fr = nn.Conv2d(4096, num_classes, 1)
            self.score_pool4 = nn.Conv2d(512, num_classes, 1)
            self.score_pool3 = nn.Conv2d(256, num_classes, 1)
            self.upscore2 = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, bias=False)
            self.upscore_pool4 = nn.ConvTranspose2d(num_classes, num_classes, 4, 2, bias=False)
            self.upscore8 = nn.ConvTranspose2d(num_classes, num_classes, 16, 8, bias=False)

        def forward(self, x):
            h = x
            pools = []
            for block in self.blocks:
                h = block(h)
                pools.append(h)
            up = self.upscore2(self.score_fr(self.fc(h)))
            s4 = self.score_pool4(pools[3])[:, :, 5:5 + up.size(2), 5:5 + up.size(3)]
            up = self.upscore_pool4(up + s4)
            s3 = self.score_pool3(pools[2])[:, :, 9:9 + up.size(2), 9:9 + up.size(3)]
            up = self.upscore8(up + s3)
            return up[:, :, 31:31 + x.size(2), 31:31 + x.size(3)]

    model = TorchFCN8s().eval()
    image = torch.from_numpy(np.random.default_rng(0).uniform(-100, 100, (1, 3, size, size)).astype("float32"))

    def run():
        with torch.inference_mode():
            return model(image).numpy()

    return {"pytorch eager (inference_mode)": run}


def measure(runners, repeats):
    for run in runners.values():  # warm-up: tracing, XLA compilation, allocator
        run()
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():  # interleaved
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, times


def main():
    args = parse_args()
    runners = keras_runners(args.size, args.num_classes, args.threads)
    torch_runners = torch_runner(args.size, args.num_classes, args.threads)
    runners.update(torch_runners or {})
    medians, raw = measure(runners, args.repeats)
    best_keras = min(v for k, v in medians.items() if k.startswith("keras"))
    torch_time = medians.get("pytorch eager (inference_mode)")
    lines = [
        f"# FCN-8s forward time, batch 1, {args.size}x{args.size}, {args.threads} threads",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; median of {args.repeats} "
        "interleaved runs after a warm-up; random weights.",
        "",
        "| runner | median s | torch / runner |",
        "|---|---|---|",
    ]
    for name, value in medians.items():
        ratio = f"{torch_time / value:.2f}" if torch_time else "n/a"
        lines.append(f"| {name} | {value:.3f} | {ratio} |")
    if torch_time:
        lines += ["", f"Best Keras mode vs PyTorch: {torch_time / best_keras:.2f}x "
                  f"({'ours is not slower' if best_keras <= torch_time else 'ours is slower'})."]
    else:
        lines += ["", "PyTorch is not installed: no comparison (pip install torch)."]
    report = "\n".join(lines)
    print(report)
    save_report(args.output_dir, "inference", report,
                {"size": args.size, "threads": args.threads, "repeats": args.repeats,
                 "median_seconds": medians, "all_seconds": raw})


if __name__ == "__main__":
    main()
