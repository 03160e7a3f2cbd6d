"""Stand-alone check of the bfloat16 training crash of the VGG16 FCN-8s (issue 13).

On an Intel Xeon with AMX (TF 2.21, Keras 3.15) a train step of the FCN-8s at 360x480 under
the ``mixed_bfloat16`` policy died with ``malloc(): unaligned tcache chunk detected`` (exit 134).
This script needs only TensorFlow and Keras (no keras_fcn): it builds the FCN-8s of the paper
(pad 100, ceil-mode pools, 7x7 ``fc6``, ``fc7``, ``score_fr``, ``upscore2``, ``score_pool4``,
``upscore_pool4``, ``score_pool3``, ``upscore8``, crops 5, 9 and 31) and runs a few SGD steps
of every variant in its own subprocess with a timeout, so an abort is seen as an exit status
instead of killing the run. The transposed convolutions are trainable here (keras_fcn keeps
them fixed by default), so their backward-weights kernels run too. Variants keep one suspect in
float32 or change the execution:

- ``f32``: float32 everywhere (the baseline).
- ``bf16``: the ``mixed_bfloat16`` policy, logits (``score``) and loss in float32.
- ``bf16_up32``: the transposed convolutions (``upscore*``) and the fusion in float32.
- ``bf16_fc32``: ``fc6``/``fc7`` in float32.
- ``bf16_score32``: every 1x1 score layer (``score_fr``, ``score_pool4``, ``score_pool3``) in
  float32.
- ``bf16_head32``: everything after ``fc7`` in float32 (scores, upsampling, crops).
- ``bf16_scorefr32``: only ``score_fr`` (over fc7's channels) in float32; ``score_pool4`` (over
  512 channels) and ``score_pool3`` (over 256) train in bfloat16.
- ``bf16_logits16``: the logits left in bfloat16 (loss computed from bfloat16 logits).
- ``bf16_16classes``: 16 classes instead of 11 (channel counts a multiple of 16).
- ``bf16_noamx``: ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``: oneDNN's AVX512-BF16 kernels, not
  its AMX ones (the same kernels as on a CPU without AMX; no change elsewhere).
- ``bf16_eigen``: ``TF_ENABLE_ONEDNN_OPTS=0`` (Eigen kernels instead of oneDNN; very slow at
  full width, over 900 s a step on 2 cores: only run when asked for by ``--variants``).
- ``bf16_xla``: the train step compiled with XLA (``jit_compile=True``).
- ``bf16_fc6matmul``: ``fc6`` computed as input patches times the reshaped kernel (one matrix
  multiply, as ``keras_fcn.runtime.convolutions_as_matmul`` does on CPUs), so oneDNN's 7x7
  bf16 convolution kernels (forward and backward) do not run.
- ``bf16_library``: what keras_fcn trains in bf16 by default since then: the head after
  ``fc7`` in float32 and ``fc6`` as a matmul.

``--conv_scan`` runs, instead of the FCN, one convolution (``--scan_kernel`` square, 1 by
default; ``--scan_inputs`` input channels
to ``--scan_outputs`` output channels, bfloat16 under ``mixed_bfloat16``, float32 logits, SGD
with momentum) for ``--steps`` train steps on a batch of two ``--scan_sizes`` square maps, each
in its own subprocess: where oneDNN's bf16 training kernels start to corrupt the heap.

``--malloc_check`` preloads glibc's malloc debugger (``MALLOC_CHECK_=3``), which aborts on the
first corrupted heap chunk even on CPUs where the corruption would go unnoticed.
``--onednn_summary VARIANT`` runs one variant (``bf16``, ``f32``, ...) with ``ONEDNN_VERBOSE=1``
and prints which oneDNN primitives and kernels ran, forward and backward, with their count and
total time over the last step: what runs in bfloat16, and where oneDNN spends its time.

Usage:
    python benchmarks/bf16_train_crash.py [--width full|mid|tiny] [--size 360x480]
        [--steps 3] [--num_classes 11] [--variants bf16,bf16_eigen] [--malloc_check]
        [--onednn_summary bf16]
    python benchmarks/bf16_train_crash.py --conv_scan --malloc_check --steps 6
        [--scan_inputs 256,512,1024,2048,4096] [--scan_outputs 2,8,11,15,16] [--scan_sizes 32]
"""

import argparse
import collections
import os
import platform
import subprocess
import sys
import time

import _outputs

WIDTHS = {"full": ((64, 128, 256, 512, 512), 4096), "mid": ((16, 32, 64, 128, 128), 256),
          "tiny": ((4, 4, 8, 8, 8), 8)}
VARIANTS = ("f32", "bf16", "bf16_up32", "bf16_fc32", "bf16_score32", "bf16_head32",
            "bf16_scorefr32",
            "bf16_logits16", "bf16_16classes", "bf16_noamx", "bf16_xla", "bf16_fc6matmul",
            "bf16_library", "bf16_eigen")
ENV = {"bf16_eigen": {"TF_ENABLE_ONEDNN_OPTS": "0"},
       "bf16_noamx": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}}
MALLOC_DEBUG = "/usr/lib/x86_64-linux-gnu/libc_malloc_debug.so.0"


def parse_args(argv=None):
    parser = _outputs.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", choices=sorted(WIDTHS), default="full")
    parser.add_argument("--size", default="360x480", help="HEIGHTxWIDTH")
    parser.add_argument("--steps", type=_outputs.positive_int, default=3)
    parser.add_argument("--num_classes", type=int, default=11)
    parser.add_argument("--variants", default=",".join(v for v in VARIANTS if v != "bf16_eigen"))
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--malloc_check", action="store_true")
    parser.add_argument("--onednn_summary", choices=VARIANTS)
    parser.add_argument("--conv_scan", action="store_true",
                        help="one convolution over a grid of channel counts (see above)")
    parser.add_argument("--scan_inputs", default="256,512,1024,2048,4096")
    parser.add_argument("--scan_outputs", default="2,8,11,15,16")
    parser.add_argument("--scan_sizes", default="32")
    parser.add_argument("--scan_kernel", type=int, default=1, help="kernel side of --conv_scan")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # the child process: one variant
    args = parser.parse_args(argv)
    if args.conv_scan:
        _check_scan(parser, args)
    _check_run(parser, args)
    return args


def _check_run(parser, args):
    """--size, --num_classes, --variants and --timeout, checked before any variant runs (a
    bad value otherwise fails in every child process, one after the other)."""
    try:
        _outputs.size_type(args.size)
    except argparse.ArgumentTypeError as error:
        parser.error(f"argument --size: {error}")
    if args.num_classes < 2:
        parser.error(f"--num_classes must be 2 or more. Received: {args.num_classes}")
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive seconds. Received: {args.timeout}")
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown --variants {unknown}; expected some of {', '.join(VARIANTS)}.")


def cpu_line():
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return f"{model} ({' '.join(isa) or 'no AVX2'})"


def patches_matmul(inputs, kernel):
    """A valid, stride-1 convolution as input patches times the reshaped kernel."""
    import tensorflow as tf

    kh, kw, cin, cout = kernel.shape
    patches = tf.image.extract_patches(inputs, [1, kh, kw, 1], [1, 1, 1, 1], [1, 1, 1, 1],
                                       "VALID")
    out = tf.linalg.matmul(tf.reshape(patches, [-1, kh * kw * cin]),
                           tf.reshape(kernel, [-1, cout]))
    return tf.reshape(out, tf.concat([tf.shape(patches)[:3], [cout]], 0))


def build_fcn8s(variant, num_classes, size, widths, fc_units):
    """The FCN-8s of the paper, with the variant's layers in float32."""
    import keras
    from keras import layers

    f32 = lambda *groups: "float32" if variant in groups else None  # noqa: E731
    head = ("bf16_head32", "bf16_library")
    inputs = keras.Input((*size, 3))
    x = layers.ZeroPadding2D(100)(inputs)
    pools = []
    for block, width in enumerate(widths, start=1):
        for i in range(2 if block < 3 else 3):
            padding = "valid" if (block, i) == (1, 0) else "same"
            x = layers.Conv2D(width, 3, padding=padding, activation="relu")(x)
        x = layers.MaxPooling2D(2, padding="same")(x)  # ceil mode
        pools.append(x)
    fc6 = layers.Conv2D(fc_units, 7, activation="relu", name="fc6", dtype=f32("bf16_fc32"))
    if variant in ("bf16_fc6matmul", "bf16_library"):
        fc6.convolution_op = patches_matmul
    x = fc6(x)
    x = layers.Conv2D(fc_units, 1, activation="relu", name="fc7", dtype=f32("bf16_fc32"))(x)
    score_dtype = f32("bf16_score32", *head)
    up_dtype = f32("bf16_up32", *head)

    def crop(x, reference, offset, dtype):
        (h, w), (rh, rw) = x.shape[1:3], reference.shape[1:3]
        return layers.Cropping2D(((offset, h - offset - rh), (offset, w - offset - rw)),
                                 dtype=dtype)(x)

    def up(x, stride, name):
        return layers.Conv2DTranspose(num_classes, 2 * stride, strides=stride, use_bias=False,
                                      name=name, dtype=up_dtype)(x)

    score = layers.Conv2D(num_classes, 1, name="score_fr",
                          dtype=f32("bf16_scorefr32") or score_dtype)(x)
    x = up(score, 2, "upscore2")
    skip = layers.Conv2D(num_classes, 1, name="score_pool4", dtype=score_dtype)(pools[3])
    x = layers.Add(dtype=up_dtype)([x, crop(skip, x, 5, up_dtype)])
    x = up(x, 2, "upscore_pool4")
    skip = layers.Conv2D(num_classes, 1, name="score_pool3", dtype=score_dtype)(pools[2])
    x = layers.Add(dtype=up_dtype)([x, crop(skip, x, 9, up_dtype)])
    x = up(x, 8, "upscore8")
    logits_dtype = None if variant == "bf16_logits16" else "float32"
    return keras.Model(inputs, crop(x, inputs, 31, logits_dtype))


def run_conv(args):
    """A few train steps of one bf16 convolution (``--run conv:INPUTSxOUTPUTSxSIZExKERNEL``)."""
    import numpy as np
    import keras

    inputs, outputs, size, kernel = (int(n) for n in args.run.split(":")[1].split("x"))
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    x = keras.Input((size, size, inputs))
    y = keras.layers.Conv2D(outputs, kernel, padding="same", name="score")(x)
    model = keras.Model(x, keras.layers.Activation("linear", dtype="float32")(y))
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, size, size, inputs)).astype("float32")
    labels = rng.integers(0, outputs, (2, size, size))
    for i in range(args.steps):
        print(f"step {i}: loss {float(model.train_on_batch(images, labels)):.4f}", flush=True)


def conv_scan(args):
    """The grid of ``--conv_scan``: one line per (inputs, outputs, size) with its exit."""
    grid = [(size, inputs, outputs) for size in _ints(args.scan_sizes)
            for inputs in _ints(args.scan_inputs) for outputs in _ints(args.scan_outputs)]
    for size, inputs, outputs in grid:
        start = time.perf_counter()
        status, output = spawn(args, f"conv:{inputs}x{outputs}x{size}x{args.scan_kernel}")
        steps = [line for line in output.splitlines() if line.startswith("step ")]
        print(f"{args.scan_kernel}x{args.scan_kernel} conv {inputs:5d} -> {outputs:3d} channels, "
              f"{size}x{size}: exit "
              f"{status!s:8s} {time.perf_counter() - start:6.1f} s  "
              f"{steps[-1] if steps else '(no step finished)'}", flush=True)


def _ints(text):
    return [int(part) for part in text.split(",")]


def _check_scan(parser, args):
    """The --scan_* lists: integers, inputs and sizes >= 1, outputs >= 2 (Keras squeezes a
    single output channel), checked before anything runs."""
    for name, least in (("scan_inputs", 1), ("scan_outputs", 2), ("scan_sizes", 1)):
        text = getattr(args, name)
        try:
            values = _ints(text)
        except ValueError:
            parser.error(f"--{name} must be comma-separated integers. Received: {text!r}")
        if min(values) < least:
            parser.error(f"--{name} values must be {least} or more. Received: {text!r}")


def run_variant(args):
    """Runs a few train steps of one variant in this process; prints the losses."""
    import numpy as np
    import keras
    import tensorflow as tf

    variant = args.run
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy("float32" if variant == "f32" else "mixed_bfloat16")
    size = tuple(int(s) for s in args.size.split("x"))
    num_classes = 16 if variant == "bf16_16classes" else args.num_classes
    model = build_fcn8s(variant, num_classes, size, *WIDTHS[args.width])
    optimizer = keras.optimizers.SGD(1e-4, momentum=0.9)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-120, 120, (1, *size, 3)), tf.float32)
    labels = tf.constant(rng.integers(0, num_classes, (1, *size)), tf.int32)

    @tf.function(jit_compile=variant == "bf16_xla")
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    for i in range(args.steps):
        start = time.perf_counter()
        loss = float(step(images, labels))
        print(f"step {i}: loss {loss:.4f} ({time.perf_counter() - start:.2f} s)", flush=True)


def child_env(variant, malloc_check, verbose=False):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **ENV.get(variant, {}))
    if malloc_check and os.path.exists(MALLOC_DEBUG):
        env.update(LD_PRELOAD=MALLOC_DEBUG, GLIBC_TUNABLES="glibc.malloc.check=3")
    if verbose:
        env["ONEDNN_VERBOSE"] = "1"
    return env


def spawn(args, variant, verbose=False):
    """Runs one variant in a subprocess; returns (exit status or 'timeout', output)."""
    command = [sys.executable, __file__, "--run", variant, "--width", args.width, "--size",
               args.size, "--steps", str(args.steps), "--num_classes", str(args.num_classes)]
    try:
        done = subprocess.run(command, env=child_env(variant, args.malloc_check, verbose),
                              capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return "timeout", ""
    return done.returncode, done.stdout + done.stderr


def onednn_summary(output):
    """{(primitive, kernel, direction, data type): [count, total ms]} over the last step."""
    lines = output.splitlines()
    last = max((i for i, line in enumerate(lines) if line.startswith("step ")), default=0)
    before = max((i for i, line in enumerate(lines[:last]) if line.startswith("step ")),
                 default=0)
    totals = collections.defaultdict(lambda: [0, 0.0])
    for line in lines[before:last]:
        fields = line.split(",")
        if line.startswith("onednn_verbose") and "exec" in fields:
            at = fields.index("exec")
            primitive, kernel, direction = fields[at + 2: at + 5]
            dtype = "bf16" if "bf16" in fields[at + 5] else "f32"
            entry = totals[(primitive, kernel, direction, dtype)]
            entry[0] += 1
            entry[1] += float(fields[-1])
    return totals


def main():
    args = parse_args()
    if args.run:
        return run_conv(args) if args.run.startswith("conv:") else run_variant(args)
    what = (f"{args.scan_kernel}x{args.scan_kernel} convolution scan" if args.conv_scan else
            f"FCN-8s width={args.width} size={args.size} classes={args.num_classes}")
    print(f"CPU: {cpu_line()}; python {platform.python_version()}; load "
          f"{os.getloadavg()[0]:.2f}; {what} steps={args.steps} "
          f"malloc_check={args.malloc_check}")
    if args.conv_scan:
        return conv_scan(args)
    if args.onednn_summary:
        status, output = spawn(args, args.onednn_summary, verbose=True)
        print(f"{args.onednn_summary} with ONEDNN_VERBOSE=1: exit {status}; the last step:")
        totals = sorted(onednn_summary(output).items(), key=lambda item: -item[1][1])
        for (primitive, kernel, direction, dtype), (n, ms) in totals:
            print(f"  {ms:9.1f} ms {n:4d}x {dtype:4s} {primitive:11s} {direction:17s} {kernel}")
        return None
    for variant in args.variants.split(","):
        start = time.perf_counter()
        status, output = spawn(args, variant)
        steps = [line for line in output.splitlines() if line.startswith("step ")]
        tail = steps[-1] if steps else (output.strip().splitlines() or ["(no output)"])[-1]
        print(f"{variant:14s} exit {status!s:8s} {time.perf_counter() - start:6.1f} s  {tail}",
              flush=True)
    return None


if __name__ == "__main__":
    main()
