"""Train-step (and forward) time of the FCN-8s in every execution mode, in one run.

Batch 1, random weights and labels, 2 threads per framework. Each framework setting runs in
its own worker process (``TF_ENABLE_ONEDNN_OPTS`` must be set before TensorFlow is imported),
and the parent asks the workers in turn, mode after mode (A B C A B C ...), so background
load hits every mode alike; the tables give medians and ratios. The CPU model, its ISA flags
and the load average are printed beside the figures.

Keras modes: ``graph`` (``tf.function``, oneDNN on: TF's default), ``xla``
(``jit_compile=True``), ``eigen`` (``TF_ENABLE_ONEDNN_OPTS=0``), ``bf16`` (the model under
``mixed_bfloat16`` via ``keras_fcn.runtime.with_precision``, logits and loss float32) and
``bf16_xla``. PyTorch modes (VGG16 only, when torch imports): ``fp32``, ``channels_last`` and
``bf16`` (``torch.autocast``). A train step is forward, loss, backward and an SGD update.

Usage:
    python benchmarks/train_step.py [--what train,forward] [--models vgg16,mobilenet_v2]
        [--sizes 360x480,500x500] [--modes graph,xla,eigen,bf16,bf16_xla,torch_fp32,...]
        [--repeats 3] [--threads 2] [--name train_step] [--overwrite]

Writes benchmarks/results/<name>.md and .json.
"""

import argparse
import datetime
import functools
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _outputs import refuse_to_overwrite, save_report  # noqa: E402

KERAS_MODES = ("graph", "xla", "eigen", "bf16", "bf16_xla")
TORCH_MODES = ("torch_fp32", "torch_channels_last", "torch_bf16")
WORKER_OF = {"eigen": "tf_eigen", **{m: "torch" for m in TORCH_MODES}}
NUM_CLASSES = 11  # CamVid


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", default="train", help="train and/or forward, comma-separated")
    parser.add_argument("--models", default="vgg16", help="vgg16 and/or mobilenet_v2")
    parser.add_argument("--sizes", default="360x480", help="HEIGHTxWIDTH, comma-separated")
    parser.add_argument("--modes", default=",".join(KERAS_MODES + TORCH_MODES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="train_step")
    parser.add_argument("--output_dir", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.modes.split(",")) - set(KERAS_MODES + TORCH_MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {KERAS_MODES + TORCH_MODES}")
    return args


# ---------------------------------------------------------------- the workers


@functools.lru_cache(maxsize=2)  # the float32 and bf16 models of one size, shared by modes
def keras_model(model_name, size, bf16):
    import keras

    from keras_fcn import runtime
    from keras_fcn.models import build_fcn

    keras.utils.set_random_seed(0)
    model = build_fcn("8s", num_classes=NUM_CLASSES, weights=None, backbone=model_name,
                      input_shape=(*size, 3))
    return runtime.with_precision(model, "bfloat16") if bf16 else model


def keras_runner(mode, model_name, size, what):
    """Returns a function running one step of ``mode``."""
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_fcn import losses

    size = tuple(size)
    model = keras_model(model_name, size, mode.startswith("bf16"))
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-120, 120, (1, *size, 3)), tf.float32)
    labels = tf.constant(rng.integers(0, NUM_CLASSES, (1, *size)), tf.int32)
    loss_fn = losses.SparseCategoricalCrossentropyIgnore(num_classes=NUM_CLASSES)
    optimizer = keras.optimizers.SGD(1e-10, momentum=0.9)

    def train(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    step = tf.function(train if what == "train" else lambda x, y: model(x, training=False),
                       jit_compile=mode.endswith("xla"))
    return lambda: step(images, labels).numpy()


def torch_runner(mode, model_name, size, what):
    import torch
    from torch import nn

    if model_name != "vgg16":
        raise ValueError("the PyTorch port is the VGG16 FCN-8s only")
    torch.manual_seed(0)
    model = TorchFCN8s(nn, NUM_CLASSES)
    images = torch.rand(1, 3, *size) * 240 - 120
    labels = torch.randint(0, NUM_CLASSES, (1, *size))
    if mode == "torch_channels_last":
        model, images = model.to(memory_format=torch.channels_last), images.contiguous(
            memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-10, momentum=0.9)
    autocast = lambda: torch.autocast("cpu", torch.bfloat16, enabled=mode == "torch_bf16")  # noqa: E731

    def train():
        optimizer.zero_grad()
        with autocast():
            logits = model(images)
        loss = nn.functional.cross_entropy(logits.float(), labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    def forward():
        with torch.inference_mode(), autocast():
            return model.eval()(images).float().numpy()

    return train if what == "train" else forward


def TorchFCN8s(nn, num_classes):  # noqa: N802 (a class factory: torch is imported lazily)
    """The reference FCN-8s in PyTorch: pad 100, ceil pools, fc6 7x7, crops 5, 9, 31."""

    class FCN8s(nn.Module):
        def __init__(self):
            super().__init__()
            stages, previous = [], 3
            for i, (width, count) in enumerate(zip((64, 128, 256, 512, 512), (2, 2, 3, 3, 3))):
                convs = [nn.Conv2d(previous if j == 0 else width, width, 3,
                                   padding=100 if i == j == 0 else 1) for j in range(count)]
                stages.append(nn.Sequential(*[m for c in convs for m in (c, nn.ReLU())],
                                            nn.MaxPool2d(2, ceil_mode=True)))
                previous = width
            self.stages = nn.ModuleList(stages)
            self.fc = nn.Sequential(nn.Conv2d(512, 4096, 7), nn.ReLU(), nn.Dropout2d(),
                                    nn.Conv2d(4096, 4096, 1), nn.ReLU(), nn.Dropout2d())
            self.score_fr, self.score_pool4, self.score_pool3 = (
                nn.Conv2d(c, num_classes, 1) for c in (4096, 512, 256))
            up = lambda k, s: nn.ConvTranspose2d(num_classes, num_classes, k, s, bias=False)  # noqa: E731
            self.upscore2, self.upscore_pool4, self.upscore8 = up(4, 2), up(4, 2), up(16, 8)

        def forward(self, x):
            feats = []
            h = x
            for stage in self.stages:
                h = stage(h)
                feats.append(h)
            crop = lambda t, o, ref: t[:, :, o:o + ref.shape[2], o:o + ref.shape[3]]  # noqa: E731
            up = self.upscore2(self.score_fr(self.fc(h)))
            up = self.upscore_pool4(up + crop(self.score_pool4(feats[3]), 5, up))
            up = self.upscore8(up + crop(self.score_pool3(feats[2]), 9, up))
            return crop(up, 31, x)

    return FCN8s()


def serve(args):
    """Worker loop: reads one JSON request a line, answers with the seconds it took."""
    if args.worker == "torch":
        import torch

        torch.set_num_threads(args.threads)
        make = torch_runner
    else:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        make = keras_runner
    config, runners = None, {}
    for line in sys.stdin:
        mode, *request = json.loads(line)["key"]
        try:
            if request != config:  # one model and size at a time: frees the previous ones
                config, runners = request, {}
            if mode not in runners:
                runners[mode] = make(mode, *request)
                runners[mode]()  # warm-up: tracing, XLA compilation, oneDNN primitives
            start = time.perf_counter()
            runners[mode]()
            answer = {"seconds": time.perf_counter() - start}
        except Exception as error:  # noqa: BLE001 (reported in the table, the run goes on)
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)


# ---------------------------------------------------------------- the parent


class Worker:
    def __init__(self, kind, args):
        env = dict(os.environ)
        if kind == "tf_eigen":
            env["TF_ENABLE_ONEDNN_OPTS"] = "0"
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, "--threads", str(args.threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, key):
        self.process.stdin.write(json.dumps({"key": key}) + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:  # skips anything a library printed
            if line.startswith("{"):
                return json.loads(line)
        return {"error": f"worker died (exit {self.process.wait()})"}

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


def measure(args, workers, what, model_name, size, modes):
    """Interleaved timings: {mode: [seconds, ...] or error string}, plus the loads seen."""
    times, loads = {m: [] for m in modes}, []
    for _ in range(args.repeats + 1):  # the first round also builds and warms up
        for mode in modes:
            if isinstance(times[mode], str):
                continue
            worker = workers[WORKER_OF.get(mode, "tf")]
            answer = worker.ask([mode, model_name, list(size), what])
            if "error" in answer:
                times[mode] = answer["error"]
            else:
                times[mode].append(answer["seconds"])
        loads.append(os.getloadavg()[0])
    return {m: t if isinstance(t, str) else t[1:] for m, t in times.items()}, loads


def table(results, info_line):
    lines = [f"# FCN-8s step times, batch 1 ({datetime.date.today()})", "",
             f"CPU: {info_line}", "",
             "| step | model | size | mode | median ms | x graph | x torch_fp32 | load |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        medians = {m: statistics.median(t) for m, t in r["seconds"].items()
                   if not isinstance(t, str) and t}
        for mode, t in r["seconds"].items():
            if mode not in medians:
                lines.append(f"| {r['what']} | {r['model']} | {r['size']} | {mode} | "
                             f"failed: {t} | | | |")
                continue
            ratio = lambda base: f"{medians[mode] / medians[base]:.2f}" if base in medians else ""  # noqa: E731
            lines.append(f"| {r['what']} | {r['model']} | {r['size']} | {mode} | "
                         f"{1000 * medians[mode]:,.0f} | {ratio('graph')} | "
                         f"{ratio('torch_fp32')} | {min(r['loads']):.1f}-{max(r['loads']):.1f} |")
    return "\n".join(lines)


def main():
    args = parse_args()
    if args.worker:
        return serve(args)
    from keras_fcn import runtime

    output = os.path.join(args.output_dir, args.name)
    refuse_to_overwrite(output, args.overwrite)
    info = runtime.cpu_info(gpu=False)
    modes = args.modes.split(",")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch is not installed: no PyTorch modes.")
        modes = [m for m in modes if m not in TORCH_MODES]
    info_line = f"{runtime.describe(info)}, {args.threads} threads, median of {args.repeats}"
    print(info_line, flush=True)
    workers = {kind: Worker(kind, args) for kind in {WORKER_OF.get(m, "tf") for m in modes}}
    results = []
    try:
        for what in args.what.split(","):
            for model_name in args.models.split(","):
                for size in [tuple(int(s) for s in z.split("x")) for z in args.sizes.split(",")]:
                    usable = [m for m in modes if model_name == "vgg16" or m not in TORCH_MODES]
                    seconds, loads = measure(args, workers, what, model_name, size, usable)
                    results.append({"what": what, "model": model_name, "size": "x".join(
                        map(str, size)), "seconds": seconds, "loads": loads})
                    print(table(results[-1:], info_line).split("\n", 4)[-1], flush=True)
    finally:
        for worker in workers.values():
            worker.close()
    report = table(results, info_line)
    print(report)
    save_report(args.output_dir, args.name, report,
                {"cpu": info, "threads": args.threads, "repeats": args.repeats,
                 "date": str(datetime.date.today()), "results": results})
    return None


if __name__ == "__main__":
    main()
