"""FCN-8s on one GPU: keras_fcn on JAX and on Keras-torch against the project's PyTorch port.

One run, one table (issue 24): forward (logits + argmax on the device) at batch 1 and 16 at
500x500, the train step (forward, loss, backward, SGD momentum 0.9) at batch 8 at 360x480, the
peak GPU memory of each, and an equivalence check of keras_fcn against the PyTorch port on the
device (same random weights, float32 without TF32: max |diff| / max |logit| <= 1e-4). Ratios to
PyTorch in the same run, against the targets: train step >= 1.0x PyTorch in fp32 and bf16,
forward batch 1 no slower than PyTorch bf16.

Each configuration runs in its own process (Keras' backend is fixed per process), in the order
of ``CONFIGS`` (the PyTorch port, keras_fcn on JAX, the JAX diagnostics in bf16, the JAX
equivalence, Keras-torch, the fp32 diagnostics, PyTorch TF32, then the rest), so that a run cut
short by ``--budget-s`` still has the headline figures and the JAX train step's diagnosis:

1. ``torch_fp32`` / ``torch_bf16``: the PyTorch port (benchmarks/torch_fcn.py), fp32 with TF32
   off, and bf16 autocast + channels_last;
2. ``keras_jax_fp32`` / ``keras_jax_bf16``: keras_fcn on JAX, fp32 at
   ``jax_default_matmul_precision="highest"`` (no TF32, as PyTorch's fp32) and
   ``mixed_bfloat16``; the train step is ``model.compile(jit_compile=True)`` (no metrics) and
   ``train_on_batch``, synchronized after every step like PyTorch's. The train steps of 1 and
   2 are also profiled (``gpu_profile.py``): the device time per step by kind of kernel
   (convolution forward, input and weight gradients, pooling, transposes, elementwise...)
   beside PyTorch's, the busiest kernels, and the wall time the device waited for the host;
3. ``equiv_jax``: the equivalence check on JAX;
4. ``keras_torch_fp32`` / ``keras_torch_bf16`` / ``equiv_torch``: the same on Keras-torch
   (eager), plus the train step with the library's label checks off (``train_unchecked``:
   each check reads a value back mid-step, a device sync) and the host reads per step by
   who makes them;
5. ``jax_diagnostics``: where the JAX train step's time goes: (c) a pure-JAX step
   (``jax.jit(jax.value_and_grad(model.stateless_call))`` + SGD momentum, state donated),
   (b) ``model.fit`` with ``steps_per_execution=8`` on in-memory arrays, (d) the forward pass
   with bf16-stored weights (``keras_fcn.runtime.with_precision(..., inference=True)``), (e) the
   step of (a) with TF32 (``jax_default_matmul_precision="tensorfloat32"``), and (c) with one
   stage written otherwise, its gradients checked against (c)'s: (f) Keras' max pooling, whose
   gradient is XLA's select-and-scatter, instead of keras_fcn's (masks: the library's default
   since 2026-12-05, benchmarks/jax_pool_gradient.py), (i) the input padding folded into
   conv1_1 (Keras' ZeroPadding2D; keras_fcn's, the default since 2026-12-06, is an
   optimization barrier: folded, conv1_1's kernel gradient becomes a cuDNN forward
   convolution with an image-sized window, benchmarks/jax_gpu_aot.py), (g) the frozen
   bilinear upsampling as two
   interpolation matmuls per channel instead of a 21x21-channel input-dilated convolution,
   (h) every transposed convolution as one stride-1 convolution to the output's phases
   (any kernel; XLA sees no input dilation: JAX's transposed convolutions are known to run
   slowly on GPUs, jax-ml/jax#23783) (``stage_variant``: benchmark-only patches; a stage
   that gains goes into the library); ``jax_diagnostics_bf16`` runs (c), (i), (b), (g), (h)
   with ``mixed_bfloat16``, where the gap is largest (it runs before the fp32 ones);
6. ``torch_tf32``: the PyTorch port with TF32 (PyTorch's default for convolutions);
7. ``jax_programs``: the compiled programs, not run: Keras' train step
   (``jax.jit(model.train_step)``, as ``fit`` compiles it), the pure-JAX step of (c) and the
   forward pass, fp32 and ``mixed_bfloat16``, with XLA's cost analysis (FLOPs, bytes), the
   buffers XLA allocates and the instructions by kind (convolutions, cuDNN calls, transposes,
   copies, fusions); the optimized HLO of each goes, gzipped, to ``<out>_hlo/`` (read it
   off the device later). Compiling only, it also runs on a CPU at the full sizes
   (``--only jax_programs``): the program Keras hands to XLA, whatever device runs it;
8. ``keras_torch_compiled_fp32`` / ``_bf16``: the Keras-torch train step with
   ``compile(jit_compile=True)``, which Keras' torch trainer runs through ``torch.compile``
   (eager above), dynamo's recompile limit raised to 64 and static shapes, its graph breaks
   counted by reason: whether compiling closes the gap on the PyTorch backend (on a CPU it
   gives the eager losses to 1.4e-6; with dynamo's defaults it hits the recompile limit of 8
   on Keras' per-layer guards, and with dynamic shapes it fails).

Timings are medians after warm-up, with the device synchronized (``block_until_ready``,
``torch.cuda.synchronize``); the first call (compilation, autotuning) is reported apart. The
script never imports TensorFlow: a keras_fcn import that pulls it in fails the configuration
(``--allow-tf``: a warning), and the table says so.

Usage:
    python benchmarks/gpu.py [--out benchmarks/results/gpu.md] [--overwrite] [--smoke]
        [--only torch_fp32,keras_jax_fp32,...] [--repeats 20] [--num-classes 21]
        [--budget-s 480] [--allow-tf] [--hide-tf]

On the GPU machine (PyTorch and JAX with CUDA, the Keras wheel, no TensorFlow), from the
repository root: ``PYTHONUNBUFFERED=1 python benchmarks/gpu.py --out $OUT/gpu.md`` (about 8
minutes on an H200; ``--hide-tf`` makes a machine with TensorFlow behave the same).

Writes the Markdown table to ``--out`` and the figures to the same path with ``.json``; when
``$OUT`` is set, also ``$OUT/<name>.md``, ``.json`` and ``.log`` (the whole output).
``--smoke``: tiny model, 64x64 inputs, batch 2, two repeats (a few minutes on 2 CPU cores).
"""

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(1, ROOT)  # keras_fcn from this checkout; HERE (torch_fcn) is sys.path[0]
if HERE not in sys.path:
    sys.path.insert(0, HERE)  # imported as a module (the tests): gpu_profile, torch_fcn
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gpu_profile  # noqa: E402 - after the path

# name, what runs it, Keras backend, precision, column label. The order is the priority.
CONFIGS = (
    ("torch_fp32", "port", None, "fp32", "PyTorch port fp32 (no TF32)"),
    ("torch_bf16", "port", None, "bf16", "PyTorch port bf16 autocast + channels_last"),
    ("keras_jax_bf16", "keras", "jax", "bf16", "keras_fcn JAX mixed_bfloat16"),
    ("keras_jax_fp32", "keras", "jax", "fp32", "keras_fcn JAX fp32 (no TF32)"),
    ("jax_diagnostics_bf16", "diagnostics", "jax", "bf16",
     "JAX train-step diagnostics, mixed_bfloat16"),
    ("equiv_jax", "equiv", "jax", "fp32", "equivalence on JAX"),
    ("keras_torch_bf16", "keras", "torch", "bf16", "keras_fcn Keras-torch mixed_bfloat16"),
    ("keras_torch_fp32", "keras", "torch", "fp32", "keras_fcn Keras-torch fp32 (no TF32)"),
    ("jax_diagnostics", "diagnostics", "jax", "fp32", "JAX train-step diagnostics"),
    ("torch_tf32", "port", None, "tf32", "PyTorch port fp32 TF32"),
    ("equiv_torch", "equiv", "torch", "fp32", "equivalence on Keras-torch"),
    ("jax_programs", "programs", "jax", "fp32", "compiled JAX programs"),
    ("keras_torch_compiled_fp32", "torch_compiled", "torch", "fp32",
     "keras_fcn Keras-torch fp32 + torch.compile"),
    ("keras_torch_compiled_bf16", "torch_compiled", "torch", "bf16",
     "keras_fcn Keras-torch mixed_bfloat16 + torch.compile"),
)
CONFIG = {c[0]: c for c in CONFIGS}
TABLE_COLUMNS = ("torch_fp32", "torch_bf16", "keras_jax_fp32", "keras_jax_bf16",
                 "keras_torch_fp32", "keras_torch_bf16", "torch_tf32")
# Seconds an item needs on the H200 (compilation included), to skip it rather than overrun.
NEEDS = {"start": 20, "port": 8, "keras_forward": 20, "keras_train": 60, "equiv": 15,
         "diag_train": 60, "programs": 90, "torch_compile": 150}
TORCH_RECOMPILE_LIMIT = 64  # Keras' layers recompile per layer (8 by default, then eager)
LR = 1e-6  # small: random weights stay finite over the timed steps
IGNORE = 255
EQUIV_TOLERANCE = 1e-4
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="Markdown report; the JSON goes beside it (.json). "
                        "Default benchmarks/results/gpu.md, and with --smoke a new folder in "
                        "the temporary folder (a CPU check is not the GPU figures).")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for a CPU check")
    parser.add_argument("--only", help="comma-separated configurations: " + ",".join(CONFIG))
    parser.add_argument("--repeats", type=int, help="timed forward calls (train: half); "
                        "default 20, 2 with --smoke")
    parser.add_argument("--num-classes", type=int, help="default 21, 3 with --smoke")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="wall-clock budget; what does not fit is skipped")
    parser.add_argument("--allow-tf", action="store_true",
                        help="only warn when importing keras_fcn imports TensorFlow")
    parser.add_argument("--hide-tf", action="store_true",
                        help="make TensorFlow unimportable, as on the GPU machine")
    for hidden in ("--worker", "--result", "--deadline", "--jax-cache"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = (os.path.join(tempfile.mkdtemp(prefix="keras_fcn_gpu_smoke_"), "gpu.md")
                    if args.smoke else os.path.join(HERE, "results", "gpu.md"))
    only = args.only.split(",") if args.only else list(CONFIG)
    unknown = sorted(set(only) - set(CONFIG))
    if unknown:
        parser.error(f"unknown configurations {unknown}; choose from {list(CONFIG)}")
    args.only = [name for name in CONFIG if name in only]
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats must be at least 1. Received: {args.repeats}")
    if not args.out.endswith(".md"):
        parser.error(f"--out must name a .md file. Received: {args.out}")
    return args


def plan(args):
    """Sizes, widths and repeats of the run."""
    repeats = args.repeats or (2 if args.smoke else 20)
    if args.smoke:
        sizes = dict(forward_size=(64, 64), forward_batches=(1, 2), train_size=(64, 64),
                     train_batch=2, equiv_sizes=((67, 93), (31, 45)),
                     widths=(8, 16, 16, 32, 32), fc_units=32, warmup=1)
    else:
        sizes = dict(forward_size=(500, 500), forward_batches=(1, 16), train_size=(360, 480),
                     train_batch=8, equiv_sizes=((67, 93), (211, 131)), widths=None,
                     fc_units=None, warmup=3)
    return dict(sizes, repeats=repeats, train_repeats=max(2, repeats // 2),
                num_classes=args.num_classes or (3 if args.smoke else 21),
                need_scale=0 if args.smoke else 1)


def write_atomic(path, text):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------- worker: shared helpers


class Worker:
    """One configuration's process: runs items in order, records them, skips past the budget."""

    def __init__(self, args):
        self.args, self.plan = args, plan(args)
        self.name, self.kind, self.backend, self.precision, _ = CONFIG[args.worker]
        self.deadline = float(args.deadline)
        self.record = {"config": self.name, "items": {}}
        self.torch = self.jax = None

    def save(self):
        write_atomic(self.args.result, json.dumps(self.record, indent=1))

    def item(self, name, need, run):
        """Runs ``run()`` (a dict of figures) as item ``name`` unless fewer than ``need``
        seconds are left; failures are recorded, not raised."""
        left = self.deadline - time.time()
        if left < need * self.plan["need_scale"] or left <= 0:
            result = {"status": "skipped: budget"}
        else:
            start = time.time()
            try:
                result = dict(run(), status="ok")
            except Exception as e:  # noqa: BLE001 - one failed item must not stop the run
                traceback.print_exc()
                result = {"status": f"failed: {type(e).__name__}: {e}"[:400]}
            result["item_s"] = round(time.time() - start, 1)
        self.record["items"][name] = result
        self.save()
        print(f"[{self.name}] {name}: {summary(result)}", flush=True)
        return result

    # device helpers for the frameworks of this process
    def sync(self, value=None):
        if self.jax is not None and value is not None:
            self.jax.block_until_ready(value)
        if self.torch is not None and self.torch.cuda.is_available():
            self.torch.cuda.synchronize()

    def reset_peak(self):
        if self.torch is not None and self.torch.cuda.is_available():
            self.torch.cuda.reset_peak_memory_stats()

    def peak_bytes(self):
        if self.backend == "jax":
            try:
                stats = self.jax.devices()[0].memory_stats() or {}
            except Exception:  # noqa: BLE001 - not every platform keeps statistics
                stats = {}
            return stats.get("peak_bytes_in_use")
        if self.torch is not None and self.torch.cuda.is_available():
            return self.torch.cuda.max_memory_allocated()
        return None

    def timed(self, call, repeats, warmup=None):
        """(first call s, [timed s]) of ``call()``: the first call, the rest of the warm-up
        (``warmup`` calls, default the plan's), then ``repeats`` timed calls, each
        synchronized (on its result on JAX)."""
        times = []
        for _ in range(max(self.plan["warmup"] if warmup is None else warmup, 1) + repeats):
            start = time.perf_counter()
            self.sync(call())
            times.append(time.perf_counter() - start)
        return times[0], times[-repeats:]

    def figures(self, first, times, batch, **extra):
        median = statistics.median(times)
        return dict(extra, batch=batch, ms=1000 * median, img_s=batch / median,
                    first_call_s=first, times_ms=[round(1000 * t, 3) for t in times],
                    peak_bytes=self.peak_bytes())

    def data(self, batch, size, seed=0):
        """Random images in [-1, 1] (NHWC float32) and labels with ~5% void pixels."""
        import numpy as np

        rng = np.random.default_rng(seed)
        images = rng.uniform(-1, 1, (batch, *size, 3)).astype("float32")
        labels = rng.integers(0, self.plan["num_classes"], (batch, *size)).astype("int32")
        labels[rng.random(labels.shape) < 0.05] = IGNORE
        return images, labels


def summary(result):
    if result.get("status") != "ok":
        return result.get("status")
    if "ms" in result:
        return (f"{result['ms']:.2f} ms, {result['img_s']:.1f} img/s "
                f"(first call {result['first_call_s']:.1f} s)")
    if "verdict" in result:
        return f"{result['verdict']} (worst ratio {result['worst_ratio']:.2e})"
    if "keras_train_step" in result:
        return ", ".join(f"{name} {result[name]['gflop_per_image']:.1f} GFLOP/img, "
                         f"{result[name]['instructions']} instructions"
                         for name in ("keras_train_step", "pure_jax_step", "forward"))
    return "ok"


def describe_device(worker):
    """The device and versions this worker runs on."""
    found = {"python": sys.version.split()[0]}
    if worker.torch is not None:
        torch = worker.torch
        found["torch"] = torch.__version__
        found["device"] = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
                           else "CPU (torch)")
    if worker.jax is not None:
        device = worker.jax.devices()[0]
        found["jax"] = worker.jax.__version__
        found["device"] = f"{device.device_kind} ({device.platform})"
    if worker.kind != "port":
        import keras

        from keras_fcn import runtime

        found["keras"] = keras.__version__
        info = runtime.cpu_info()  # what --precision=auto picks on this GPU, and why
        found["compute capability"] = info["gpu_capability"]
        found["auto precision"] = runtime.resolve_precision("auto", info=info)
    return found


def show_device(worker):
    """Records and prints the device; outside ``--smoke`` a CPU fallback stops the worker."""
    worker.record["device"] = describe_device(worker)
    worker.save()
    print(f"[{worker.name}] " + ", ".join(f"{k} {v}" for k, v in worker.record["device"].items()),
          flush=True)
    on_gpu = [worker.torch.cuda.is_available()] if worker.torch is not None else []
    if worker.jax is not None:
        on_gpu.append(worker.jax.default_backend() == "gpu")
    if not worker.args.smoke and worker.kind != "programs" and not all(on_gpu):
        sys.exit(f"[{worker.name}] no GPU seen ({worker.record['device']}): only --smoke runs "
                 "on the CPU.")


def import_torch(worker, tf32):
    import torch

    worker.torch = torch
    torch.backends.cudnn.benchmark = True  # fixed sizes: what a PyTorch user would set
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    return torch


def import_keras_fcn(worker):
    """Imports what the keras workers use and checks that TensorFlow stayed out (the guard).

    Returns the guard record; exits when keras_fcn needs or imports TensorFlow (without
    ``--allow-tf``)."""
    culprit = []

    class Spy:  # records who imports tensorflow first; finds nothing itself
        def find_spec(self, name, path=None, target=None):
            if name != "tensorflow" or culprit:
                return None
            stack = traceback.extract_stack()
            probe = any(f.name == "find_spec" and f.filename in (
                "<frozen importlib.util>", importlib.util.__file__) for f in stack)  # has-TF
            if not probe:
                culprit.extend(keras_fcn_frames(stack))
            return None

    had_tf = sys.modules.get("tensorflow") is not None
    sys.meta_path.insert(0, Spy())
    try:
        import keras_fcn.losses  # noqa: F401
        import keras_fcn.models  # noqa: F401
        import keras_fcn.weights  # noqa: F401
        error = None
    except ImportError as e:
        error = e
        culprit.extend(keras_fcn_frames(traceback.extract_tb(e.__traceback__)))
    finally:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, Spy)]
    where = " <- ".join(reversed(culprit)) or "?"
    if error is not None:
        guard = {"verdict": "FAIL", "detail": f"importing keras_fcn failed ({error}) at {where}"}
    elif sys.modules.get("tensorflow") is not None and not had_tf:
        verdict = "WARN" if worker.args.allow_tf else "FAIL"
        guard = {"verdict": verdict, "detail": f"importing keras_fcn imported TensorFlow at "
                 f"{where}"}
    else:
        guard = {"verdict": "PASS", "detail": "importing keras_fcn left TensorFlow out"}
    worker.record["tf_guard"] = guard
    worker.save()
    print(f"[{worker.name}] TF guard {guard['verdict']}: {guard['detail']}", flush=True)
    if guard["verdict"] == "FAIL":
        sys.exit(f"TensorFlow guard FAIL: {guard['detail']}")
    return guard


def keras_fcn_frames(frames):
    marker = os.sep + "keras_fcn" + os.sep
    return [f"{os.path.relpath(f.filename, ROOT)}:{f.lineno}" for f in frames
            if marker in f.filename]


def build_keras_model(worker):
    """keras_fcn's FCN-8s (VGG16; the smoke plan's small widths), random weights."""
    import keras

    from keras_fcn.models import build_fcn, build_fcn8s

    keras.utils.set_random_seed(0)
    p = worker.plan
    if p["widths"] is None:
        return build_fcn8s(num_classes=p["num_classes"], weights=None)
    return build_fcn("8s", num_classes=p["num_classes"], weights=None, widths=p["widths"],
                     fc_units=p["fc_units"])


def keras_compile(model, backend, steps_per_execution=1, jit_compile=None):
    """SGD momentum and the library's loss; ``jit_compile`` None: XLA on JAX, eager on torch
    (True on torch: ``torch.compile`` of Keras' step)."""
    import keras

    from keras_fcn.losses import SparseCategoricalCrossentropyIgnore

    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR, momentum=0.9),
                  loss=SparseCategoricalCrossentropyIgnore(ignore_label=IGNORE),
                  jit_compile=backend == "jax" if jit_compile is None else jit_compile,
                  steps_per_execution=steps_per_execution)


# ---------------------------------------------------------------- worker: the configurations


def run_port(worker):
    """The PyTorch port: forward and train step."""
    torch = import_torch(worker, tf32=worker.precision == "tf32")
    from torch_fcn import VGG16_WIDTHS, TorchFCN

    show_device(worker)
    p = worker.plan
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = worker.precision == "bf16"
    fmt = torch.channels_last if bf16 else torch.contiguous_format
    torch.manual_seed(0)
    model = TorchFCN("8s", p["num_classes"], p["widths"] or VGG16_WIDTHS,
                     p["fc_units"] or 4096).to(device, memory_format=fmt)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def tensors(batch, size):
        images, labels = worker.data(batch, size)
        x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(device)
        return x.contiguous(memory_format=fmt), torch.from_numpy(labels).long().to(device)

    def forward(batch):
        x, _ = tensors(batch, p["forward_size"])
        model.eval()

        def call():
            with torch.inference_mode(), autocast():
                return model(x).argmax(1)

        worker.reset_peak()
        return worker.figures(*worker.timed(call, p["repeats"]), batch)

    def train():
        x, y = tensors(p["train_batch"], p["train_size"])
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)

        def step():
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = torch.nn.functional.cross_entropy(model(x), y, ignore_index=IGNORE)
            loss.backward()
            optimizer.step()
            return loss

        worker.reset_peak()
        figures = worker.figures(*worker.timed(step, p["train_repeats"]), p["train_batch"])
        return dict(figures, profile=gpu_profile.guarded(gpu_profile.torch_profile, torch, step))

    for batch in p["forward_batches"]:
        worker.item(f"forward_b{batch}", NEEDS["port"], lambda: forward(batch))
    worker.item("train", NEEDS["port"], train)


def setup_keras(worker):
    """Imports the backend's framework, checks the TF guard, sets the dtype policy."""
    if worker.backend == "jax":
        import jax

        worker.jax = jax
        if worker.args.jax_cache:
            jax.config.update("jax_compilation_cache_dir", worker.args.jax_cache)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
        if worker.precision == "fp32" and worker.kind != "diagnostics":
            jax.config.update("jax_default_matmul_precision", "highest")
    else:
        import_torch(worker, tf32=False)
    import_keras_fcn(worker)
    import keras

    if worker.precision == "bf16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    show_device(worker)
    return keras


def to_device(worker, array):
    if worker.backend == "jax":
        return worker.jax.device_put(array)
    device = "cuda" if worker.torch.cuda.is_available() else "cpu"
    return worker.torch.as_tensor(array, device=device)


def keras_forward_fn(worker, model):
    """Logits and argmax on the device: a jitted ``stateless_call`` on JAX, the eager model
    under ``no_grad`` on Keras-torch."""
    if worker.backend == "jax":
        jax = worker.jax
        state = ([v.value for v in model.trainable_variables],
                 [v.value for v in model.non_trainable_variables])

        @jax.jit
        def forward(trainable, non_trainable, x):
            logits, _ = model.stateless_call(trainable, non_trainable, x, training=False)
            return logits, jax.numpy.argmax(logits, axis=-1)

        return lambda x: forward(*state, x)
    torch = worker.torch

    def forward(x):
        with torch.no_grad():
            logits = model(x, training=False)
            return logits, torch.argmax(logits, dim=-1)

    return forward


def keras_forward_item(worker, model, batch, name):
    p = worker.plan

    def run():
        forward = keras_forward_fn(worker, model)
        x = to_device(worker, worker.data(batch, p["forward_size"])[0])
        worker.reset_peak()
        return worker.figures(*worker.timed(lambda: forward(x), p["repeats"]), batch)

    return worker.item(name, NEEDS["keras_forward"], run)


def state_values(model):
    return [v.value for v in model.trainable_variables]


def keras_train_item(worker, model, name, need=NEEDS["keras_train"], jit_compile=None,
                     extra=None, warmup=None):
    """``train_on_batch`` after ``compile(jit_compile=True on JAX)``, synchronized per step;
    ``extra(step)``: more figures for the record, read after the timing (``step()`` runs one
    more step)."""
    p = worker.plan

    def run():
        keras_compile(model, worker.backend, jit_compile=jit_compile)
        images, labels = worker.data(p["train_batch"], p["train_size"])
        x, y = to_device(worker, images), to_device(worker, labels)
        worker.reset_peak()
        def step():
            return model.train_on_batch(x, y), state_values(model)

        first, times = worker.timed(step, p["train_repeats"], warmup)
        return worker.figures(first, times, p["train_batch"], **(extra(step) if extra else {}))

    return worker.item(name, need, run)


def host_reads(worker, model):
    """Values the eager Keras-torch train step reads back to Python in one step (each a
    device sync), by who reads them: ``aten._local_scalar_dense`` calls under a dispatch mode,
    attributed to the innermost keras_fcn frame (else Keras')."""
    import collections
    import traceback as tb

    from torch.utils._python_dispatch import TorchDispatchMode

    torch = worker.torch
    images, labels = worker.data(worker.plan["train_batch"], worker.plan["train_size"])
    x, y = to_device(worker, images), to_device(worker, labels)
    reads = collections.Counter()

    class Reads(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:
                frames = [f for f in tb.extract_stack()
                          if f"{os.sep}torch{os.sep}" not in f.filename and f.filename != __file__]
                ours = [f for f in frames if f"{os.sep}keras_fcn{os.sep}" in f.filename]
                where = (ours or frames or [None])[-1]
                reads["keras_fcn" if ours else "keras"] += 1
                if where is not None:
                    reads[f"{os.path.basename(where.filename)}:{where.name}"] += 1
            return func(*args, **(kwargs or {}))

    with Reads():
        model.train_on_batch(x, y)
    worker.sync()
    return {"host_reads": dict(reads)}


@contextlib.contextmanager
def library_checks_off():
    """The library's eager label and weight checks skipped, as inside a compiled step (bad
    labels then give a NaN loss instead of an error): what the checks' host reads cost."""
    from keras_fcn import _tf

    concrete = _tf.is_concrete
    _tf.is_concrete = lambda x: False
    try:
        yield
    finally:
        _tf.is_concrete = concrete


def run_keras(worker):
    setup_keras(worker)
    model = build_keras_model(worker)
    for batch in worker.plan["forward_batches"]:
        keras_forward_item(worker, model, batch, f"forward_b{batch}")
    if worker.backend != "torch":
        keras_train_item(worker, model, "train", extra=lambda step: {
            "profile": gpu_profile.guarded(gpu_profile.jax_profile, worker.jax, step)})
        return
    keras_train_item(worker, model, "train", extra=lambda step: host_reads(worker, model))
    with library_checks_off():
        keras_train_item(worker, model, "train_unchecked",
                         extra=lambda step: host_reads(worker, model))


def run_equivalence(worker):
    """Same random weights in the PyTorch port and keras_fcn, fp32 without TF32 on both."""
    keras = setup_keras(worker)  # JAX takes the GPU before PyTorch comes in beside it
    torch = import_torch(worker, tf32=False)
    show_device(worker)
    import numpy as np
    from torch_fcn import VGG16_WIDTHS, TorchFCN, randomize

    from keras_fcn.weights import convert_torch_state_dict, set_weights_by_name

    p = worker.plan
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def run():
        torch_model = randomize(TorchFCN("8s", p["num_classes"], p["widths"] or VGG16_WIDTHS,
                                         p["fc_units"] or 4096))
        model = build_keras_model(worker)
        weights = convert_torch_state_dict(torch_model.state_dict())
        done = set(set_weights_by_name(model, weights))
        missing = {layer.name for layer in model.layers if layer.weights} - done
        if missing or done != set(weights):
            raise ValueError(f"weights not copied by name: Keras layers left out "
                             f"{sorted(missing)}, state dict layers not set "
                             f"{sorted(set(weights) - done)}")
        torch_model.to(device)
        rows = []
        for i, (height, width) in enumerate(p["equiv_sizes"]):
            images = np.random.default_rng(i).uniform(-1, 1, (1, height, width, 3))
            images = images.astype("float32")
            with torch.no_grad():
                x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(device)
                want = torch_model(x).cpu().numpy().transpose(0, 2, 3, 1)
            got = keras.ops.convert_to_numpy(model(images, training=False))
            if got.shape != want.shape:
                raise ValueError(f"{height}x{width}: shapes {got.shape} vs {want.shape}")
            diff, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
            rows.append({"size": [height, width], "max_abs_diff": diff, "max_abs_logit": scale,
                         "ratio": diff / scale,
                         "argmax_agree": float(np.mean(got.argmax(-1) == want.argmax(-1)))})
        worst = max(row["ratio"] for row in rows)
        return {"sizes": rows, "worst_ratio": worst, "tolerance": EQUIV_TOLERANCE,
                "verdict": "PASS" if worst <= EQUIV_TOLERANCE else "FAIL"}

    worker.item("equivalence", NEEDS["equiv"], run)


def run_diagnostics(worker):
    """Where the JAX train step's time goes (see the module docstring, (b) to (i))."""
    import numpy as np

    setup_keras(worker)
    jax = worker.jax
    p = worker.plan
    model = build_keras_model(worker)
    # Score layers start at zero, which stops every gradient below them: random ones make the
    # gradients of (f) and (g) comparable with (c)'s (the timings do not depend on values).
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if layer.name.startswith("score") and getattr(layer, "kernel", None) is not None:
            layer.kernel.assign(0.01 * rng.standard_normal(layer.kernel.shape))
    # mixed_bfloat16 (the larger gap): (c), (i), (b), (g), (h); (f) is an old default, (d) and
    # (e) are fp32 matters. The upsampling variants come last: XLA's GPU program has no
    # input-dilated convolution (benchmarks/jax_gpu_aot.py), the budget may cut them.
    bf16 = worker.precision == "bf16"
    variants = STAGE_VARIANTS[1:] if bf16 else STAGE_VARIANTS
    upsampling = [v for v in variants if v.endswith("_upsampling")]

    def variant_items(chosen):
        for variant in chosen:
            worker.item(f"train_pure_jax_{variant}", NEEDS["diag_train"],
                        lambda variant=variant: pure_jax_train(worker, model, variant))

    with jax.default_matmul_precision("highest"):
        worker.item("train_pure_jax", NEEDS["diag_train"], lambda: pure_jax_train(worker, model))
        variant_items([v for v in variants if v not in upsampling])
        # (b) trains the model: every variable (weights and the dropout seed state, not a
        # weight) comes back after it, so that the later variants draw (c)'s dropout masks at
        # (c)'s weights and their gradients compare with (c)'s
        saved = [np.array(v.value) for v in model.variables]
        worker.item("train_fit_spe8", NEEDS["diag_train"], lambda: fit_train(worker, model))
        for variable, value in zip(model.variables, saved):
            variable.assign(value)
        variant_items(upsampling)
    if bf16:
        return
    weights_bf16 = bf16_weights_model(worker, model)
    for batch in p["forward_batches"]:
        name = f"forward_b{batch}_bf16_weights"
        if isinstance(weights_bf16, str):
            worker.record["items"][name] = {"status": weights_bf16}
            worker.save()
            print(f"[{worker.name}] {name}: {weights_bf16}", flush=True)
        else:
            keras_forward_item(worker, weights_bf16, batch, name)
    with jax.default_matmul_precision("tensorfloat32"):
        keras_train_item(worker, model, "train_tf32", NEEDS["diag_train"])


def pure_jax_step(worker, model):
    """(c)'s step: jit(value_and_grad(stateless_call)) + SGD momentum as Keras' SGD does it
    (m = 0.9 m - lr g; w += m), the state donated; returns (step, fresh state copies)."""
    jax = worker.jax
    from keras_fcn.losses import SparseCategoricalCrossentropyIgnore

    loss_fn = SparseCategoricalCrossentropyIgnore(ignore_label=IGNORE)

    def loss_of(trainable, non_trainable, x, y):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_fn(y, logits), non_trainable

    def step(trainable, non_trainable, momenta, x, y):
        (loss, non_trainable), grads = jax.value_and_grad(loss_of, has_aux=True)(
            trainable, non_trainable, x, y)
        momenta = [0.9 * m - LR * g for m, g in zip(momenta, grads)]
        trainable = [w + m for w, m in zip(trainable, momenta)]
        return trainable, non_trainable, momenta, loss

    # copies: the donated buffers must not be the model's own (the next variants use them)
    state = [[jax.numpy.array(v.value, copy=True) for v in variables]
             for variables in (model.trainable_variables, model.non_trainable_variables)]
    state.append([jax.numpy.zeros_like(w) for w in state[0]])
    return jax.jit(step, donate_argnums=(0, 1, 2)), state


def pure_jax_train(worker, model, variant=None):
    """(c) the pure-JAX step timed: the XLA compute without Keras' trainer; with ``variant``
    (one of ``STAGE_VARIANTS``), (f), (i), (g) or (h): the same step with one stage otherwise,
    and how far its gradients are from (c)'s (the first step's momenta are -lr * gradient)."""
    jax = worker.jax
    p = worker.plan
    step, state = pure_jax_step(worker, model)
    batch = p["train_batch"]
    images, labels = worker.data(batch, p["train_size"])
    x, y = jax.device_put(images), jax.device_put(labels)
    first = []

    def call():
        out = step(*state, x, y)
        state[:] = out[:3]
        if not first:
            first.append([jax.numpy.array(m, copy=True) for m in out[2]])
        return state

    with stage_variant(worker, model, variant):  # the step is traced on its first call
        figures = worker.figures(*worker.timed(call, p["train_repeats"]), batch)
    if variant is None:
        worker.first_momenta = first[0]
    elif getattr(worker, "first_momenta", None) is not None:
        jnp = jax.numpy
        scale = max(float(jnp.max(jnp.abs(m))) for m in worker.first_momenta)
        figures["grad_rel_diff"] = max(
            float(jnp.max(jnp.abs(a - b))) for a, b in zip(first[0], worker.first_momenta)
        ) / (scale or 1.0)
    return figures


# Stages of the train step written otherwise, for (f), (i), (g) and (h): keras_fcn's max pools
# write their JAX gradient as masks, Keras' own leave XLA a select-and-scatter; keras_fcn's
# input padding is an optimization barrier, Keras' is folded into conv1_1; Keras' transposed
# convolution is an input-dilated convolution over all 21x21 channel pairs where the frozen
# bilinear kernel is per channel. PyTorch runs cuDNN's pooling backward and deconvolution.
STAGE_VARIANTS = ("keras_pooling", "folded_padding", "separable_upsampling",
                  "polyphase_upsampling")


@contextlib.contextmanager
def stage_variant(worker, model, variant):
    """Within the block, Keras layers run one stage of ``model`` otherwise (benchmark only):

    - ``"keras_pooling"``: keras_fcn's max pools run Keras' own layer (XLA's
      select-and-scatter gradient) instead of their mask gradient (the library's default);
    - ``"separable_upsampling"``: every frozen bilinear ``Conv2DTranspose`` (per-channel
      kernel) as two interpolation matrices, ``A @ x @ B^T`` per channel (same sums);
    - ``"polyphase_upsampling"``: every ``Conv2DTranspose`` (any kernel) as one stride-1
      convolution to stride x stride phases of the output, interleaved (depth to space): the
      form the library would take for any kernel, where XLA sees no input dilation;
    - ``"folded_padding"``: the trunk's 100-pixel input padding (``pad1``) as Keras' own
      ``ZeroPadding2D``, which XLA folds into conv1_1 (the library's default before
      2026-12-06): conv1_1's kernel gradient then compiles for the GPU to a cuDNN forward
      convolution with a 360x480 window (benchmarks/jax_gpu_aot.py) instead of the
      backward-filter call that keras_fcn's ``ZeroPadding2D`` (an optimization barrier) gives.

    Refuses (ValueError) a model whose layers do not fit the rewrite."""
    if variant is None:
        yield
        return
    import keras
    import numpy as np

    jax = worker.jax
    jnp = jax.numpy
    if variant == "keras_pooling":
        from keras_fcn import layers as fcn_layers

        owner = fcn_layers.MaxPooling2D
        if not any(isinstance(layer, owner) for layer in model.layers):
            raise ValueError("the model has no keras_fcn.layers.MaxPooling2D")

        def call(self, x):
            return keras.layers.MaxPooling2D.call(self, x)
    elif variant == "separable_upsampling":
        from keras_fcn.layers import bilinear_kernel

        owner = keras.layers.Conv2DTranspose
        for layer in model.layers:
            if isinstance(layer, owner):
                k, channels = layer.kernel_size[0], layer.filters
                expected = np.zeros((k, k, channels, channels), "float32")
                expected[:, :, np.arange(channels), np.arange(channels)] = (
                    bilinear_kernel(k)[..., None])
                if (layer.trainable or layer.padding != "valid" or layer.use_bias
                        or not np.array_equal(np.asarray(layer.kernel.value), expected)):
                    raise ValueError(f"{layer.name} is not a frozen bilinear upsampling")

        def call(self, x):
            return separable_upsampling(jnp, x, self.kernel_size[0], self.strides[0])
    elif variant == "polyphase_upsampling":
        owner = keras.layers.Conv2DTranspose
        for layer in model.layers:
            if isinstance(layer, owner) and (layer.padding != "valid" or layer.use_bias
                                             or tuple(layer.dilation_rate) != (1, 1)):
                raise ValueError(f"{layer.name} is not a bias-free 'valid' transposed "
                                 "convolution")

        def call(self, x):
            return polyphase_upsampling(jax, x, self.kernel, self.strides)
    elif variant == "folded_padding":
        from keras_fcn import layers as fcn_layers

        owner = fcn_layers.ZeroPadding2D
        if not any(isinstance(layer, owner) for layer in model.layers):
            raise ValueError("the model has no keras_fcn.layers.ZeroPadding2D")

        def call(self, x):
            return keras.layers.ZeroPadding2D.call(self, x)
    else:
        raise ValueError(f"unknown stage variant {variant!r}; choose from {STAGE_VARIANTS}")
    original = owner.call
    owner.call = call
    try:
        yield
    finally:
        owner.call = original


def separable_upsampling(jnp, x, kernel, stride):
    """The per-channel bilinear transposed convolution ('valid') as A @ x @ B^T."""
    import numpy as np

    from keras_fcn.layers import bilinear_taps

    taps = bilinear_taps(kernel)

    def matrix(size):
        out = np.zeros(((size - 1) * stride + kernel, size), "float32")
        for i in range(size):
            out[i * stride:i * stride + kernel, i] = taps
        return jnp.asarray(out, x.dtype)

    return jnp.einsum("ip,bpqc,jq->bijc", matrix(x.shape[1]), x, matrix(x.shape[2]))


def polyphase_upsampling(jax, x, kernel, strides):
    """A 'valid' transposed convolution (Keras kernel (kh, kw, out, in)) as a stride-1
    convolution of ``x`` to the output's sh x sw phases, interleaved: output row
    ``i * sh + p`` sums ``x[i - t] * kernel[p + t * sh]`` over the taps t."""
    jnp = jax.numpy
    kh, kw, c_out, c_in = kernel.shape
    sh, sw = strides
    th, tw = -(-kh // sh), -(-kw // sw)  # taps per phase (kernel padded to a multiple)
    kernel = jnp.pad(jnp.asarray(kernel, x.dtype),
                     ((0, th * sh - kh), (0, tw * sw - kw), (0, 0), (0, 0)))
    phases = kernel.reshape(th, sh, tw, sw, c_out, c_in)[::-1, :, ::-1]
    phases = jnp.transpose(phases, (0, 2, 5, 1, 3, 4)).reshape(th, tw, c_in, sh * sw * c_out)
    y = jax.lax.conv_general_dilated(x, phases, (1, 1), ((th - 1, th - 1), (tw - 1, tw - 1)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    n, h, w, _ = y.shape
    y = y.reshape(n, h, w, sh, sw, c_out).transpose(0, 1, 3, 2, 4, 5)
    y = y.reshape(n, h * sh, w * sw, c_out)
    return y[:, :h * sh - (th * sh - kh), :w * sw - (tw * sw - kw)]


def fit_train(worker, model):
    """(b) ``model.fit`` with steps_per_execution=8 over 8 in-memory batches (numpy), per
    epoch: Keras' host dispatch amortized, the device never waited for between steps."""
    import keras

    p = worker.plan
    batch, steps = p["train_batch"], 8
    images, labels = worker.data(batch * steps, p["train_size"], seed=1)
    epochs = 1 + max(2, p["train_repeats"] // 4)
    stamps = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            stamps.append([time.perf_counter()])

        def on_epoch_end(self, epoch, logs=None):
            worker.sync(state_values(model))
            stamps[-1].append(time.perf_counter())

    keras_compile(model, "jax", steps_per_execution=steps)
    model.fit(images, labels, batch_size=batch, epochs=epochs, shuffle=False, verbose=0,
              callbacks=[EpochTimer()])
    per_step = [(end - begin) / steps for begin, end in stamps]
    result = worker.figures(per_step[0], per_step[1:], batch)
    result["first_call_s"] = per_step[0] * steps  # the first epoch, compilation included
    return result


def bf16_weights_model(worker, model):
    """(d) the model with its weights stored in bf16, or the reason it cannot be built here."""
    had_tf = sys.modules.get("tensorflow") is not None
    try:
        from keras_fcn import runtime
    except ImportError as e:
        return f"skipped: keras_fcn.runtime does not import without TensorFlow ({e})"
    if sys.modules.get("tensorflow") is not None and not had_tf and not worker.args.allow_tf:
        return "skipped: keras_fcn.runtime imports TensorFlow"
    try:
        return runtime.with_precision(model, "bfloat16", inference=True)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        return f"skipped: with_precision failed ({type(e).__name__}: {e})"[:400]


PROGRAM_OPS = ("convolution", "custom-call", "transpose", "copy", "fusion")


def program_stats(compiled, batch, save_as=None):
    """XLA's cost analysis, buffer sizes and instruction counts of a compiled program; with
    ``save_as``, its optimized HLO text goes there too (gzip), to read off the device."""
    import gzip
    import re

    cost = compiled.cost_analysis()
    cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
    text = compiled.as_text()
    if save_as:
        os.makedirs(os.path.dirname(save_as), exist_ok=True)
        with gzip.open(save_as, "wt", encoding="utf-8") as f:
            f.write(text)
    opcodes = re.findall(r"^\s*(?:ROOT )?%?[\w.-]+ = [^=]*?\s([a-z][\w-]*)\(", text, re.M)
    counts = {op: opcodes.count(op) for op in PROGRAM_OPS}
    targets = re.findall(r'custom_call_target="([^"]+)"', text)
    stats = {"gflop_per_image": cost.get("flops", 0.0) / batch / 1e9,
             "gb_accessed_per_image": cost.get("bytes accessed", 0.0) / batch / 1e9,
             "instructions": len(opcodes), "ops": counts,
             "custom_call_targets": {t: targets.count(t) for t in sorted(set(targets))}}
    try:
        memory = compiled.memory_analysis()
        stats["temp_bytes"] = int(memory.temp_size_in_bytes)
        stats["argument_bytes"] = int(memory.argument_size_in_bytes)
    except Exception:  # noqa: BLE001 - not every platform reports it
        pass
    return stats


def compiled_programs(worker):
    """Keras' train step, the pure-JAX step and the forward pass, compiled, not run."""
    import keras

    jax = worker.jax
    p = worker.plan
    model = build_keras_model(worker)
    keras_compile(model, "jax")
    model.optimizer.build(model.trainable_variables)
    batch = p["train_batch"]
    images, labels = worker.data(batch, p["train_size"])
    state = tuple([v.value for v in variables] for variables in (
        model.trainable_variables, model.non_trainable_variables, model.optimizer.variables,
        model.metrics_variables))
    found, start = {}, time.perf_counter()
    policy = keras.config.dtype_policy().name
    folder = os.path.splitext(worker.args.out)[0] + "_hlo"

    def stats(name, compiled):
        found[name] = program_stats(compiled, batch,
                                    os.path.join(folder, f"{policy}_{name}.hlo.txt.gz"))

    keras_step = jax.jit(model.train_step, donate_argnums=0)  # as fit's train function
    stats("keras_train_step", keras_step.lower(state, (images, labels)).compile())
    pure, pure_state = pure_jax_step(worker, model)
    stats("pure_jax_step", pure.lower(*pure_state, images, labels).compile())

    def forward(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x, training=False)[0]

    stats("forward", jax.jit(forward).lower(*state[:2], images).compile())
    found["hlo_folder"] = folder
    found["compile_s"] = time.perf_counter() - start
    found["policy"] = policy
    return found


def run_programs(worker):
    keras = setup_keras(worker)
    for policy in ("float32", "mixed_bfloat16"):
        keras.config.set_dtype_policy(policy)
        with (worker.jax.default_matmul_precision("highest") if policy == "float32"
              else contextlib.nullcontext()):
            worker.item(f"programs_{policy}", NEEDS["programs"],
                        lambda: compiled_programs(worker))
    keras.config.set_dtype_policy("float32")


def run_torch_compiled(worker):
    """The Keras-torch train step under ``torch.compile`` (``compile(jit_compile=True)``,
    which Keras' torch trainer turns into ``torch.compile`` of its step), with dynamo's
    recompile limit raised so that Keras' per-layer guards do not drop it to eager; the
    graph breaks are counted."""
    setup_keras(worker)
    torch = worker.torch
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(config, name):
            setattr(config, name, TORCH_RECOMPILE_LIMIT)
    # Keras' layer functions are traced once per layer shape: with dynamic shapes guessed
    # after a recompile, a shape check of a later layer fails ("cannot determine truth value
    # of Relational"; seen on a CPU). Static shapes: one compile per shape, as the step has.
    config.automatic_dynamic_shapes = False
    from torch._dynamo.utils import counters

    def breaks():
        reasons = {}
        for reason, count in counters["graph_break"].items():
            first = reason.strip().splitlines()[0][:120]
            reasons[first] = reasons.get(first, 0) + count
        return {"graph_breaks": sum(reasons.values()), "graph_break_reasons": reasons,
                "recompile_limit": TORCH_RECOMPILE_LIMIT}

    model = build_keras_model(worker)
    # dynamo recompiles Keras' layer functions over the first two steps (seen on a CPU)
    keras_train_item(worker, model, "train", NEEDS["torch_compile"], jit_compile=True,
                     extra=lambda step: breaks(), warmup=max(worker.plan["warmup"], 4))


RUNNERS = {"port": run_port, "keras": run_keras, "equiv": run_equivalence,
           "diagnostics": run_diagnostics, "programs": run_programs,
           "torch_compiled": run_torch_compiled}


def worker_main(args):
    if args.hide_tf:
        sys.modules["tensorflow"] = None  # `import tensorflow` fails, find_spec says absent
    worker = Worker(args)
    worker.save()
    try:
        RUNNERS[worker.kind](worker)
    except BaseException as e:  # the parent's table names why the configuration stopped
        worker.record["error"] = (str(e) if isinstance(e, SystemExit)
                                  else f"{type(e).__name__}: {e}")[:400]
        worker.save()
        raise


# ---------------------------------------------------------------- parent: run and report


def cpu_line(path="/proc/cpuinfo"):
    """(model name, ISA flags of ISA_FLAGS present) of the first processor."""
    model, flags = None, set()
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model is None:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model or "unknown CPU", [flag for flag in ISA_FLAGS if flag in flags]


def versions():
    from importlib import metadata

    found = {"python": sys.version.split()[0]}
    for name in ("torch", "jax", "jaxlib", "keras"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def nvidia_smi_gpu():
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=30)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_config(args, name, deadline, cache_dir, log):
    """Runs one configuration's worker; returns its record (whatever it saved)."""
    _, kind, backend, _, label = CONFIG[name]
    fd, result_path = tempfile.mkstemp(prefix=f"gpu_{name}_", suffix=".json")
    os.close(fd)
    os.remove(result_path)
    command = [sys.executable, os.path.abspath(__file__), "--worker", name,
               "--result", result_path, "--deadline", repr(deadline), "--jax-cache", cache_dir,
               "--out", args.out]
    for flag, value in (("--smoke", args.smoke), ("--allow-tf", args.allow_tf),
                        ("--hide-tf", args.hide_tf)):
        command += [flag] if value else []
    command += ["--repeats", str(args.repeats)] if args.repeats else []
    command += ["--num-classes", str(args.num_classes)] if args.num_classes else []
    env = dict(os.environ, PYTHONUNBUFFERED="1", XLA_PYTHON_CLIENT_PREALLOCATE="false")
    if backend:
        env["KERAS_BACKEND"] = backend
    start = time.time()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, start_new_session=True)
    pump = threading.Thread(target=lambda: [log(f"  {line.rstrip()}") for line in proc.stdout])
    pump.start()
    try:
        proc.wait(timeout=max(deadline - time.time(), 0) + 30)
        stopped = None
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
        stopped = "stopped past the budget"
    pump.join()
    record = {"config": name, "items": {}}
    if os.path.exists(result_path):
        with open(result_path) as f:
            record = json.load(f)
        os.remove(result_path)
    record.update(label=label, kind=kind, backend=backend, returncode=proc.returncode,
                  wall_s=round(time.time() - start, 1))
    record["status"] = (stopped or ("ok" if proc.returncode == 0 else
                                    f"failed: {record.get('error') or proc.returncode}"))
    return record


def main():
    args = parse_args()
    if args.worker:
        return worker_main(args)
    base = args.out[:-len(".md")]
    for path in (base + ".md", base + ".json"):
        if os.path.exists(path) and not args.overwrite:
            sys.exit(f"{path} exists; pass --overwrite to replace it.")
    out_dir = os.environ.get("OUT")
    extra = (os.path.join(out_dir, os.path.basename(base))
             if out_dir and os.path.isdir(out_dir) else None)
    lines = []

    def log(text):
        print(text, flush=True)
        lines.append(text)
        if extra and len(lines) % 20 == 0:
            write_atomic(extra + ".log", "\n".join(lines) + "\n")

    start = time.time()
    deadline = start + args.budget_s
    cpu, isa = cpu_line()
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
              "smoke": args.smoke, "budget_s": args.budget_s, "plan": plan(args),
              "machine": {"cpu": cpu, "isa": isa, "nvidia_smi": nvidia_smi_gpu()},
              "versions": versions(), "configs": {}}
    log(f"CPU: {cpu} ({' '.join(isa) or 'none of ' + ' '.join(ISA_FLAGS)})")
    log(f"GPU (nvidia-smi): {report['machine']['nvidia_smi'] or 'n/a'}")
    log("versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    log(f"date: {report['date']}; budget {args.budget_s:.0f} s; configurations: "
        + ", ".join(args.only))
    need_scale = plan(args)["need_scale"]
    with tempfile.TemporaryDirectory(prefix="gpu_jax_cache_") as cache_dir:
        for name in args.only:
            left = deadline - time.time()
            if left <= NEEDS["start"] * need_scale or left <= 0:
                record = {"config": name, "label": CONFIG[name][4], "items": {},
                          "status": "skipped: budget"}
                log(f"== {name}: skipped: budget")
            else:
                log(f"== {name} ({left:.0f} s of budget left)")
                record = run_config(args, name, deadline, cache_dir, log)
                log(f"== {name}: {record['status']} in {record['wall_s']} s")
            report["configs"][name] = record
            finish(report, base, extra, start, partial=True)
    markdown = finish(report, base, extra, start, partial=False)
    log("")
    log(markdown)
    if extra:
        write_atomic(extra + ".log", "\n".join(lines) + "\n")
    failed = [v["verdict"] for v in report["equivalence"].values()] + [
        report["tf_guard"]["verdict"]]
    return 1 if "FAIL" in failed else 0


def finish(report, base, extra, start, partial):
    """Derives the verdicts and ratios, writes the report files; returns the Markdown."""
    report["wall_s"] = round(time.time() - start, 1)
    report["partial"] = partial
    report["equivalence"] = equivalence_verdicts(report)
    report["tf_guard"] = guard_verdict(report)
    report["ratios"] = ratios(report)
    markdown = render(report)
    text = json.dumps(report, indent=1)
    for target in [base] + ([extra] if extra and os.path.abspath(extra) != os.path.abspath(base)
                            else []):
        write_atomic(target + ".md", markdown + "\n")
        write_atomic(target + ".json", text + "\n")
    return markdown


def item(report, config, name):
    """The item's figures when it ran, else None."""
    found = report["configs"].get(config, {}).get("items", {}).get(name)
    return found if found and found.get("status") == "ok" else None


def equivalence_verdicts(report):
    verdicts = {}
    for config, backend in (("equiv_jax", "jax"), ("equiv_torch", "torch")):
        if config not in report["configs"]:
            continue
        found = item(report, config, "equivalence")
        record = report["configs"][config]
        verdicts[backend] = found or {
            "verdict": "FAIL" if record.get("status", "").startswith("failed") else "n/a",
            "detail": record.get("items", {}).get("equivalence", {}).get("status")
            or record.get("status")}
    return verdicts


def guard_verdict(report):
    guards = {name: record["tf_guard"] for name, record in report["configs"].items()
              if "tf_guard" in record}
    order = ("FAIL", "WARN", "PASS")
    for verdict in order:
        hit = {n: g["detail"] for n, g in guards.items() if g["verdict"] == verdict}
        if hit:
            return {"verdict": verdict, "detail": next(iter(hit.values())),
                    "configs": sorted(hit)}
    return {"verdict": "n/a", "detail": "no keras_fcn configuration ran"}


def ratios(report):
    """Keras / PyTorch ratios of this run, with the issue's targets."""
    p = report["plan"]
    b1, bn = (f"forward_b{b}" for b in p["forward_batches"])
    rows = []

    def add(name, keras_item, torch_item, kind, target=None):
        if keras_item and torch_item:
            value = (keras_item["img_s"] / torch_item["img_s"] if kind == "throughput"
                     else keras_item["ms"] / torch_item["ms"])
        else:
            value = None
        met = None
        if value is not None and target is not None:
            met = value >= target if kind == "throughput" else value <= target
        rows.append({"name": name, "value": value, "kind": kind, "target": target, "met": met})

    for backend, title in (("jax", "JAX"), ("torch", "Keras-torch")):
        k32, k16 = f"keras_{backend}_fp32", f"keras_{backend}_bf16"
        add(f"train fp32: keras_fcn {title} / PyTorch fp32 (img/s)",
            item(report, k32, "train"), item(report, "torch_fp32", "train"), "throughput", 1.0)
        add(f"train bf16: keras_fcn {title} mixed_bfloat16 / PyTorch bf16 + channels_last "
            "(img/s)", item(report, k16, "train"), item(report, "torch_bf16", "train"),
            "throughput", 1.0)
        for config, what in ((k32, "fp32"), (k16, "mixed_bfloat16")):
            add(f"forward b1: keras_fcn {title} {what} / PyTorch bf16 (time)",
                item(report, config, b1), item(report, "torch_bf16", b1), "time", 1.0)
        if backend == "jax":
            add("forward b1: keras_fcn JAX bf16 weights / PyTorch bf16 (time)",
                item(report, "jax_diagnostics", f"{b1}_bf16_weights"),
                item(report, "torch_bf16", b1), "time", 1.0)
        add(f"forward b{p['forward_batches'][1]}: keras_fcn {title} fp32 / PyTorch fp32 "
            "(img/s)", item(report, k32, bn), item(report, "torch_fp32", bn), "throughput")
        add(f"forward b{p['forward_batches'][1]}: keras_fcn {title} mixed_bfloat16 / PyTorch "
            "bf16 (img/s)", item(report, k16, bn), item(report, "torch_bf16", bn), "throughput")
    return rows


def gib(value):
    return "n/a" if value is None else f"{value / 2 ** 30:.2f}"


def cell(report, config, name, style):
    record = report["configs"].get(config)
    if record is None:
        return "—"
    found = record.get("items", {}).get(name)
    if found is None:
        return record.get("status", "—") if record.get("status") != "ok" else "—"
    if found.get("status") != "ok":
        return found["status"].split(":")[0] + (": budget" if "budget" in found["status"]
                                                else "")
    if style == "ms":
        return f"{found['ms']:.2f} ms ({found['img_s']:,.0f} img/s)"
    return f"{found['img_s']:,.1f} img/s ({found['ms']:.1f} ms)"


def render(report):
    p = report["plan"]
    fh, fw = p["forward_size"]
    th, tw = p["train_size"]
    b1, bn = p["forward_batches"]
    devices = sorted({r.get("device", {}).get("device") for r in report["configs"].values()}
                     - {None})
    found_versions = dict(report["versions"])
    for record in report["configs"].values():
        found_versions.update({k: v for k, v in record.get("device", {}).items()
                               if k != "device"})
    isa = " ".join(report["machine"]["isa"]) or "none of " + " ".join(ISA_FLAGS)
    title = "smoke run (tiny model, not a measurement)" if report["smoke"] else "FCN-8s"
    lines = [
        f"# {title}: keras_fcn against the PyTorch port on one GPU ({report['date'][:10]})", "",
        f"GPU: {', '.join(devices) or 'none ran'}"
        + (f" (nvidia-smi: {report['machine']['nvidia_smi']})"
           if report["machine"]["nvidia_smi"] else ""),
        f"CPU: {report['machine']['cpu']} ({isa})",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in found_versions.items() if v), "",
        f"{p['num_classes']} classes, random weights, "
        + ("VGG16 FCN-8s" if p["widths"] is None else f"widths {p['widths']}, fc {p['fc_units']}")
        + f". Forward = logits + argmax on the device, batch {b1} and {bn} at {fh}x{fw}. "
        f"Train step = forward + loss + backward + SGD momentum 0.9, batch {p['train_batch']} at "
        f"{th}x{tw}. Medians of {p['repeats']} (forward) / {p['train_repeats']} (train) after "
        "warm-up, synchronized after every call. fp32 = no TF32 (PyTorch TF32 off, JAX "
        "precision 'highest'). Keras train step: compile(jit_compile=True on JAX, no metrics) + "
        "train_on_batch. Peak GPU memory: PyTorch per measurement; JAX's peak of the process.",
        f"Wall time {report['wall_s']:.0f} s of a {report['budget_s']:.0f} s budget"
        + (" (partial: still running)" if report["partial"] else "") + ".", "",
        "| what | " + " | ".join(CONFIG[c][4] for c in TABLE_COLUMNS) + " |",
        "|---" * (len(TABLE_COLUMNS) + 1) + "|"]
    rows = ((f"forward b{b1} {fh}x{fw}", f"forward_b{b1}", "ms"),
            (f"forward b{bn} {fh}x{fw}", f"forward_b{bn}", "img_s"),
            (f"train b{p['train_batch']} {th}x{tw}", "train", "img_s"))
    for label, name, style in rows:
        lines.append(f"| {label} | " + " | ".join(
            cell(report, c, name, style) for c in TABLE_COLUMNS) + " |")
    peak, first = [], []
    for c in TABLE_COLUMNS:
        found = [item(report, c, n) for _, n, _ in rows]
        peak.append(" / ".join(gib(f["peak_bytes"]) if f else "—" for f in found))
        first.append(" / ".join(f"{f['first_call_s']:.1f}" if f else "—" for f in found))
    lines.append(f"| peak GPU memory GiB (fwd b{b1} / b{bn} / train) | " + " | ".join(peak)
                 + " |")
    lines.append(f"| first call s (fwd b{b1} / b{bn} / train) | " + " | ".join(first) + " |")
    lines += ["", "## Ratios to PyTorch (this run) and the targets", "",
              "| comparison | ratio | target | met |", "|---|---|---|---|"]
    for row in report["ratios"]:
        target = ("—" if row["target"] is None else
                  f"{'>=' if row['kind'] == 'throughput' else '<='} {row['target']:.1f}x")
        met = {True: "yes", False: "no", None: "—"}[row["met"]]
        value = "n/a" if row["value"] is None else f"{row['value']:.2f}x"
        lines.append(f"| {row['name']} | {value} | {target} | {met} |")
    lines += (diagnostics_lines(report) + profile_lines(report) + host_read_lines(report)
              + torch_compiled_lines(report) + programs_lines(report)
              + equivalence_lines(report))
    guard = report["tf_guard"]
    lines += ["", f"TensorFlow guard: {guard['verdict']} ({guard['detail']})."]
    return "\n".join(lines)


def diagnostics_lines(report):
    lines = []
    for precision, diagnostics in (("bf16", "jax_diagnostics_bf16"), ("fp32", "jax_diagnostics")):
        if precision == "bf16" and diagnostics not in report["configs"]:
            continue
        lines += precision_diagnostics_lines(report, precision, diagnostics)
    return lines


def precision_diagnostics_lines(report, precision, diagnostics):
    p = report["plan"]
    base = item(report, f"keras_jax_{precision}", "train")
    port = item(report, f"torch_{precision}", "train")
    variants = (
        ("(a) Keras compile(jit_compile) + train_on_batch, synced per step",
         f"keras_jax_{precision}", "train"),
        ("(b) Keras fit, steps_per_execution=8, numpy batches", diagnostics,
         "train_fit_spe8"),
        ("(c) pure JAX: jit(value_and_grad(stateless_call)) + SGD momentum, donated state",
         diagnostics, "train_pure_jax"),
        ("(f) as (c) with Keras' max pooling (XLA select-and-scatter gradient)",
         diagnostics, "train_pure_jax_keras_pooling"),
        ("(g) as (c), frozen bilinear upsampling as two matmuls per channel",
         diagnostics, "train_pure_jax_separable_upsampling"),
        ("(h) as (c), upsampling as one stride-1 convolution to the output's phases",
         diagnostics, "train_pure_jax_polyphase_upsampling"),
        ("(i) as (c) with the input padding folded into conv1_1 (Keras' ZeroPadding2D)",
         diagnostics, "train_pure_jax_folded_padding"),
        ("(e) as (a) with TF32 (precision 'tensorfloat32')", diagnostics, "train_tf32"))
    if precision == "bf16":
        variants = tuple(v for v in variants if not v[0].startswith(("(f)", "(e)")))
    title = "mixed_bfloat16" if precision == "bf16" else "fp32"
    lines = ["", f"## Where the JAX train step goes ({title}, batch {p['train_batch']})", "",
             "| variant | img/s | ms/step | first call s | x (a) | x PyTorch "
             f"{precision} |", "|---|---|---|---|---|---|"]
    for label, config, name in variants:
        found = item(report, config, name)
        if found is None:
            status = cell(report, config, name, "img_s")
            lines.append(f"| {label} | {status} | | | | |")
            continue
        ratio = f"{found['img_s'] / base['img_s']:.2f}" if base else "—"
        versus = f"{found['img_s'] / port['img_s']:.2f}" if port else "—"
        if "grad_rel_diff" in found:
            label += f" (gradients = (c)'s to {found['grad_rel_diff']:.1e} of their scale)"
        lines.append(f"| {label} | {found['img_s']:,.1f} | {found['ms']:.1f} | "
                     f"{found['first_call_s']:.1f} | {ratio} | {versus} |")
    if precision == "bf16":
        return lines
    for batch in p["forward_batches"]:
        found = item(report, "jax_diagnostics", f"forward_b{batch}_bf16_weights")
        mixed = item(report, "keras_jax_bf16", f"forward_b{batch}")
        label = f"(d) forward b{batch}, bf16-stored weights (with_precision inference=True)"
        if found is None:
            status = cell(report, "jax_diagnostics", f"forward_b{batch}_bf16_weights", "ms")
            lines.append(f"| {label} | {status} | | | | |")
        else:
            versus = f"{mixed['ms'] / found['ms']:.2f}x mixed_bf16's speed" if mixed else "—"
            lines.append(f"| {label} | {found['img_s']:,.1f} | {found['ms']:.2f} | "
                         f"{found['first_call_s']:.1f} | {versus} | |")
    return lines


PROFILED = ("torch_bf16", "keras_jax_bf16", "torch_fp32", "keras_jax_fp32")


def profile_lines(report, top=8):
    """Device time per train step by kind of kernel (gpu_profile), PyTorch beside keras_fcn."""
    found = {c: (item(report, c, "train") or {}).get("profile") for c in PROFILED}
    failed = [f"Profile of {CONFIG[c][4]}: {f.get('status')}." for c, f in found.items()
              if f and "kinds_ms" not in f]
    found = {c: f for c, f in found.items() if f and "kinds_ms" in f}
    if not found:
        return ["", *failed] if failed else []
    configs = list(found)
    kinds = [k for k, _ in gpu_profile.KINDS] + ["elementwise / other"]
    lines = ["", "## Where the device time goes (train step, ms per step, "
             f"{next(iter(found.values()))['steps']} profiled steps)", "",
             "| kernels | " + " | ".join(CONFIG[c][4] for c in configs) + " |",
             "|---" * (len(configs) + 1) + "|"]
    for kind in kinds:
        if any(found[c]["kinds_ms"].get(kind) for c in configs):
            lines.append(f"| {kind} | " + " | ".join(
                f"{found[c]['kinds_ms'].get(kind, 0.0):.2f}" for c in configs) + " |")
    for label, value in (("all kernels", lambda f: f"{f['kernel_ms']:.2f}"),
                         ("wall time per step (profiled)", lambda f: f"{f['wall_ms']:.2f}"),
                         ("wall - kernels (device idle or overlap)",
                          lambda f: f"{f['wall_ms'] - f['kernel_ms']:.2f}"),
                         ("distinct kernels", lambda f: str(f["distinct_kernels"])),
                         ("events from", lambda f: f["source"])):
        lines.append(f"| {label} | " + " | ".join(value(found[c]) for c in configs) + " |")
    if failed:
        lines += [""] + failed
    for c in configs:
        lines += ["", f"Busiest kernels, {CONFIG[c][4]}:", "",
                  "| kernel | kind | calls/step | ms/step |", "|---|---|---|---|"]
        lines += [f"| `{k['name'][:90]}` | {k['kind']} | {k['calls']:.0f} | {k['ms']:.2f} |"
                  for k in found[c]["top"][:top]]
        ops = found[c].get("xla_ops") or found[c].get("ops")
        if ops:  # JAX: the HLO instructions behind the kernels, with their shapes if known
            lines += ["", f"Busiest XLA operations, {CONFIG[c][4]}:", "",
                      "| operation | calls/step | ms/step | kernel | instruction |",
                      "|---|---|---|---|---|"]
            for op in ops[:top]:
                text = op["stats"].get("long_name") or op["stats"].get("hlo_category") or ""
                lines.append(f"| `{op['op'][:40]}` | {op['calls']:.0f} | {op['ms']:.2f} | "
                             f"`{(op['kernels'] or [''])[0][:50]}` | `{text[:120]}` |")
    return lines


def host_read_lines(report):
    """The eager Keras-torch step with and without the library's label checks, which read a
    value back (a device sync) in the middle of the step."""
    p = report["plan"]
    lines = ["", f"## Keras-torch: host reads per train step (batch {p['train_batch']})", "",
             "| precision | library checks | img/s | ms/step | host reads (keras_fcn / Keras) "
             "| x checked |", "|---|---|---|---|---|---|"]
    for precision in ("fp32", "bf16"):
        config = f"keras_torch_{precision}"
        base = item(report, config, "train")
        for name, checks in (("train", "on (default)"), ("train_unchecked", "off")):
            found = item(report, config, name)
            if found is None:
                lines.append(f"| {precision} | {checks} | {cell(report, config, name, 'img_s')} "
                             "| | | |")
                continue
            reads = found.get("host_reads", {})
            where = ", ".join(f"{k} {v}" for k, v in sorted(reads.items())
                              if k not in ("keras_fcn", "keras"))
            ratio = f"{found['img_s'] / base['img_s']:.2f}x" if base else "—"
            lines.append(f"| {precision} | {checks} | {found['img_s']:,.1f} | {found['ms']:.1f} | "
                         f"{reads.get('keras_fcn', 0)} / {reads.get('keras', 0)} ({where}) "
                         f"| {ratio} |")
    return lines


def torch_compiled_lines(report):
    """The Keras-torch train step with ``torch.compile``, against eager Keras-torch and the
    PyTorch port of the same precision."""
    p = report["plan"]
    lines = ["", f"## Keras-torch with torch.compile (train, batch {p['train_batch']})", "",
             "| precision | img/s | ms/step | first call s | graph breaks | x eager Keras-torch "
             "| x PyTorch port |", "|---|---|---|---|---|---|---|"]
    for precision, port in (("fp32", "torch_fp32"), ("bf16", "torch_bf16")):
        config = f"keras_torch_compiled_{precision}"
        found = item(report, config, "train")
        if found is None:
            lines.append(f"| {precision} | {cell(report, config, 'train', 'img_s')} "
                         "| | | | | |")
            continue
        ratios = []
        for other in (f"keras_torch_{precision}", port):
            base = item(report, other, "train")
            ratios.append(f"{found['img_s'] / base['img_s']:.2f}x" if base else "—")
        lines.append(f"| {precision} | {found['img_s']:,.1f} | {found['ms']:.1f} | "
                     f"{found['first_call_s']:.1f} | {found.get('graph_breaks', '—')} | "
                     + " | ".join(ratios) + " |")
    return lines


def programs_lines(report):
    """The compiled programs of ``jax_programs``: what Keras hands XLA, against pure JAX."""
    record = report["configs"].get("jax_programs")
    if record is None:
        return []
    device = record.get("device", {}).get("device", "?")
    p = report["plan"]
    lines = ["", f"## The compiled programs (JAX on {device}; batch {p['train_batch']}, "
             f"{p['train_size'][0]}x{p['train_size'][1]}; compiled, not run)", "",
             "| policy | program | GFLOP/img | GB accessed/img | temp MiB | instructions | "
             + " | ".join(PROGRAM_OPS) + " | cuDNN/library calls |",
             "|---" * (7 + len(PROGRAM_OPS)) + "|"]
    for name, found in record.get("items", {}).items():
        policy = name.replace("programs_", "")
        if found.get("status") != "ok":
            lines.append(f"| {policy} | {found.get('status')} |" + " |" * (5 + len(PROGRAM_OPS)))
            continue
        for program in ("keras_train_step", "pure_jax_step", "forward"):
            stats = found[program]
            temp = stats.get("temp_bytes")
            calls = ", ".join(f"{k} {v}" for k, v in stats["custom_call_targets"].items())
            lines.append(
                f"| {policy} | {program} | {stats['gflop_per_image']:.1f} | "
                f"{stats['gb_accessed_per_image']:.2f} | "
                + ("—" if temp is None else f"{temp / 2**20:,.0f}")
                + f" | {stats['instructions']} | "
                + " | ".join(str(stats["ops"][op]) for op in PROGRAM_OPS)
                + f" | {calls or '—'} |")
    return lines


def equivalence_lines(report):
    lines = ["", "## keras_fcn = the PyTorch port on the device (fp32, no TF32)", "",
             "| backend | size | max abs diff | max abs logit | ratio | argmax agree | verdict |",
             "|---|---|---|---|---|---|---|"]
    for backend, found in report["equivalence"].items():
        if "sizes" not in found:
            lines.append(f"| {backend} | — | | | | | {found['verdict']}: {found['detail']} |")
            continue
        for row in found["sizes"]:
            ok = "PASS" if row["ratio"] <= found["tolerance"] else "FAIL"
            lines.append(f"| {backend} | {row['size'][0]}x{row['size'][1]} | "
                         f"{row['max_abs_diff']:.3g} | {row['max_abs_logit']:.3g} | "
                         f"{row['ratio']:.2e} | {100 * row['argmax_agree']:.2f}% | {ok} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
