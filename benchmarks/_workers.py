"""Worker processes for the timing benchmarks (train_step.py, inference.py): every mode runs
in a long-lived worker, and the parent asks the workers in turn, mode after mode (A B C A B C),
so background load hits every mode alike.

A worker is the benchmark script itself, started with ``--worker KIND``: ``tf``, ``tf_eigen``
(``TF_ENABLE_ONEDNN_OPTS=0``, which must be set before TensorFlow is imported), ``torch`` or
``tflite``. It reads one JSON request a line, ``{"key": [mode, *config]}``, builds the runner of
``mode`` once per config (warm-up included: tracing, XLA compilation, oneDNN primitives,
TFLite conversion) and answers with the seconds of one timed call.

Example (in a benchmark script):
    >>> workers = {kind: Worker(kind, __file__, threads=2) for kind in ("tf", "torch")}
    >>> seconds, loads = measure(workers, worker_of, ["vgg16", [360, 480], "forward"],
    ...                          ["graph", "torch_fp32"], repeats=3)
"""

import functools
import json
import os
import subprocess
import sys
import time

# graph: tf.function + oneDNN; *_matmul: the same with fc6 as one matrix multiply
# (keras_fcn.runtime.convolutions_as_matmul, the CPU default since issue 13's roofline)
KERAS_MODES = ("graph", "matmul", "xla", "eigen", "bf16", "bf16_matmul", "bf16_xla")
TORCH_MODES = ("torch_fp32", "torch_channels_last", "torch_compile", "torch_bf16")
TORCH_FP32_MODES = TORCH_MODES[:3]
TORCH_COMPILE_LIMIT = 180  # seconds: a slower torch.compile is reported and skipped
NUM_CLASSES = 11  # CamVid
MODELS = ("vgg16", "mobilenet_v2")
STEPS = ("train", "forward")


def worker_kind(mode):
    """The worker that runs ``mode``."""
    if mode == "eigen":
        return "tf_eigen"
    if mode.startswith("torch_"):
        return "torch"
    return "tflite" if mode.startswith("tflite_") else "tf"


def set_threads(kind, threads):
    if kind == "torch":
        import torch

        torch.set_num_threads(threads)
    elif kind != "tflite":  # the interpreter gets its threads when it is made
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


# ---------------------------------------------------------------- Keras and PyTorch runners


@functools.lru_cache(maxsize=2)  # the float32 and bf16 models of one size, shared by modes
def keras_model(model_name, size, bf16=False):
    import keras

    from keras_fcn import runtime
    from keras_fcn.models import build_fcn

    keras.utils.set_random_seed(0)
    model = build_fcn("8s", num_classes=NUM_CLASSES, weights=None, backbone=model_name,
                      input_shape=(*size, 3))
    return runtime.with_precision(model, "bfloat16") if bf16 else model


def keras_inputs(size):
    """A random batch-1 image in the model's input range and random labels, as tensors."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    return (tf.constant(rng.uniform(-120, 120, (1, *size, 3)), tf.float32),
            tf.constant(rng.integers(0, NUM_CLASSES, (1, *size)), tf.int32))


def keras_runner(mode, model_name, size, what, threads):
    """Returns a function running one step (``what``: train or forward) of a Keras mode."""
    import keras
    import tensorflow as tf

    from keras_fcn import losses, runtime

    size = tuple(size)
    model = keras_model(model_name, size, mode.startswith("bf16"))
    images, labels = keras_inputs(size)
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
    with runtime.convolutions_as_matmul(model, mode.endswith("matmul")):
        step(images, labels)  # traced here: the *_matmul modes keep fc6 as a matmul
    return lambda: step(images, labels).numpy()


def torch_runner(mode, model_name, size, what, threads):
    """A PyTorch FCN-8s step: fp32, channels_last, torch.compile (of the channels_last model)
    or bf16 autocast."""
    import torch
    from torch import nn

    if model_name != "vgg16":
        raise ValueError("the PyTorch port is the VGG16 FCN-8s only")
    import torch_fcn  # benchmarks/torch_fcn.py: the project's one PyTorch port

    torch.manual_seed(0)
    model = torch_fcn.TorchFCN("8s", NUM_CLASSES)
    images = torch.rand(1, 3, *size) * 240 - 120
    labels = torch.randint(0, NUM_CLASSES, (1, *size))
    if mode in ("torch_channels_last", "torch_compile"):
        model, images = model.to(memory_format=torch.channels_last), images.contiguous(
            memory_format=torch.channels_last)
    if what == "forward":
        model.eval()
    net = torch.compile(model) if mode == "torch_compile" else model
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-10, momentum=0.9)
    bf16 = mode == "torch_bf16"
    autocast = lambda: torch.autocast("cpu", torch.bfloat16, enabled=bf16)  # noqa: E731

    def train():
        optimizer.zero_grad()
        with autocast():
            logits = net(images)
        loss = nn.functional.cross_entropy(logits.float(), labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    def forward():
        with torch.inference_mode(), autocast():
            return net(images).float().numpy()

    run = train if what == "train" else forward
    if mode == "torch_compile":
        start = time.perf_counter()
        run()  # compiles
        if time.perf_counter() - start > TORCH_COMPILE_LIMIT:
            raise TimeoutError(f"torch.compile took {time.perf_counter() - start:.0f} s "
                               f"(> {TORCH_COMPILE_LIMIT} s): skipped")
    return run


def step_runner(mode, model_name, size, what, threads):
    """The runner of a Keras or PyTorch mode (see :func:`keras_runner`, :func:`torch_runner`)."""
    runner = torch_runner if mode.startswith("torch_") else keras_runner
    return runner(mode, model_name, size, what, threads)


# ---------------------------------------------------------------- the worker loop and the parent


def parse_run_args(parser, name, modes, argv=None):
    """Adds the flags every timing benchmark has (``--modes``, repeats, threads, output, the
    worker's) to ``parser``, parses ``argv`` and checks the modes against ``modes``."""
    import argparse

    from _outputs import add_report_flags, choices_type, positive_int, sizes_type

    parser.add_argument("--modes", default=",".join(modes))

    parser.add_argument("--repeats", type=int, default=3, help="Timed calls per mode.")
    parser.add_argument("--threads", type=positive_int, default=2)
    add_report_flags(parser, name)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(args.modes.split(",")) - set(modes)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {modes}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1. Received: {args.repeats}")
    # Checked here, before any worker starts: a bad value would otherwise fail in every
    # mode and leave a report of failures (or a traceback after the workers started).
    checks = {"models": choices_type(MODELS), "sizes": sizes_type, "what": choices_type(STEPS)}
    for flag, check in checks.items():
        if getattr(args, flag, None) is not None:
            try:
                check(getattr(args, flag))
            except argparse.ArgumentTypeError as error:
                parser.error(f"argument --{flag}: {error}")
    return args


def serve(kind, threads, make):
    """Worker loop: reads one JSON request a line, answers with the seconds it took.

    ``make(mode, *config, threads)`` returns the runner of ``mode``; one config (model, size,
    step) is kept at a time, so the previous one's models are freed.
    """
    set_threads(kind, threads)
    config, runners = None, {}
    for line in sys.stdin:
        mode, *request = json.loads(line)["key"]
        try:
            if request != config:
                config, runners = request, {}
            if mode not in runners:
                runners[mode] = make(mode, *request, threads)
                runners[mode]()  # warm-up
            start = time.perf_counter()
            runners[mode]()
            answer = {"seconds": time.perf_counter() - start}
        except Exception as error:  # noqa: BLE001 (reported in the table, the run goes on)
            # One line for the table; TensorFlow's messages end with the useful part.
            answer = {"error": f"{type(error).__name__}: {' '.join(str(error).split())[-300:]}"}
        print(json.dumps(answer), flush=True)


class Worker:
    """A worker process running ``script --worker kind``."""

    def __init__(self, kind, script, threads):
        self.env = dict(os.environ)
        if kind == "tf_eigen":
            self.env["TF_ENABLE_ONEDNN_OPTS"] = "0"
        self.command = [sys.executable, script, "--worker", kind, "--threads", str(threads)]
        self.process = self._start()

    def _start(self):
        return subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, env=self.env)

    def ask(self, key):
        """The worker's answer; a worker that dies (an abort inside a library: the bf16
        heap corruption of docs/speed.md) answers an error for this mode and is started
        again, so the other modes it serves go on."""
        try:
            self.process.stdin.write(json.dumps({"key": key}) + "\n")
            self.process.stdin.flush()
            for line in self.process.stdout:  # skips anything a library printed
                if line.startswith("{"):
                    return json.loads(line)
        except BrokenPipeError:
            pass
        status = self.process.wait()
        self.process = self._start()
        return {"error": f"worker died (exit {status})"}

    def close(self):
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        self.process.wait(timeout=60)


def start_workers(modes, script, threads):
    """One worker per kind the modes need: ``{kind: Worker}``."""
    return {kind: Worker(kind, script, threads) for kind in {worker_kind(m) for m in modes}}


def close_workers(workers):
    for worker in workers.values():
        worker.close()


def measure(workers, config, modes, repeats, log=None):
    """Interleaved timings of ``modes`` for one ``config`` (a list, e.g. [model, size, step]):
    ``({mode: [seconds, ...] or an error string}, [load averages seen])``."""
    times, loads = {m: [] for m in modes}, []
    for _ in range(repeats + 1):  # the first round also builds and warms up
        for mode in modes:
            if isinstance(times[mode], str):
                continue
            answer = workers[worker_kind(mode)].ask([mode, *config])
            if "error" in answer:
                times[mode] = answer["error"]
            else:
                times[mode].append(answer["seconds"])
            if log:
                log(mode, answer)
        loads.append(os.getloadavg()[0])
    return {m: t if isinstance(t, str) else t[1:] for m, t in times.items()}, loads


def medians(seconds):
    """``{mode: median seconds}`` of the modes that ran."""
    import statistics

    return {m: statistics.median(t) for m, t in seconds.items() if not isinstance(t, str) and t}


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def finish(workers, args, results, table, info, info_line):
    """Closes the workers, prints the table of ``results`` and saves it (Markdown + JSON)."""
    import datetime

    from _outputs import save_report

    close_workers(workers)
    report = table(results, info_line)
    print(report)
    save_report(args.output_dir, args.name, report,
                {"cpu": info, "threads": args.threads, "repeats": args.repeats,
                 "date": str(datetime.date.today()), "results": results})


def run_grid(workers, args, modes, whats, table, info_line, log=None):
    """Measures every (what, model, size) of the run's flags, mode after mode; prints each
    row as it comes and returns the rows (closes the workers if anything fails)."""
    results = []
    try:
        for what in whats:
            for model_name in args.models.split(","):
                for size in [tuple(int(s) for s in z.split("x")) for z in args.sizes.split(",")]:
                    usable = [m for m in modes
                              if model_name == "vgg16" or m not in TORCH_MODES]
                    print(f"{what} {model_name} {size[0]}x{size[1]}: {', '.join(usable)}",
                          flush=True)
                    seconds, loads = measure(workers, [model_name, list(size), what], usable,
                                             args.repeats, log=log)
                    results.append({"what": what, "model": model_name,
                                    "size": "x".join(map(str, size)), "seconds": seconds,
                                    "loads": loads})
                    print(table(results[-1:], info_line).split("\n", 4)[-1], flush=True)
    except BaseException:
        close_workers(workers)
        raise
    return results
