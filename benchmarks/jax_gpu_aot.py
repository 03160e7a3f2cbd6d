"""FCN-8s train step and forward pass compiled for an H200 without a GPU (deviceless AOT).

Issue 24: on an H200 the Keras-on-JAX train step of FCN-8s runs at 0.55x (fp32) / 0.41x
(``mixed_bfloat16``) of PyTorch's throughput. ``gpu.py --only jax_programs`` shows what Keras
hands XLA, but compiled for the CPU. This script compiles the same programs for a CUDA target
(compute capability 9.0, 132 SMs: an H200 or H100) on a machine with no GPU, through JAX's
compile-only GPU topology (``jax.experimental.topologies.get_topology_desc(platform="cuda",
target_config=...)``), and summarises the GPU-optimized HLO: the cuDNN convolution calls
(layouts, dim labels, input-dilated = transposed convolutions), transposes and copies (count,
bytes), select-and-scatter, fusions, kernels in the entry computation and the buffers XLA
allocates. Nothing is run, and nothing is autotuned (no device): the convolution algorithms
and GEMM back ends are XLA's defaults, not what a real H200 would pick; layouts, fusions and
the program's structure are what the GPU compiler produces for that target.

Programs (FCN-8s VGG16, 21 classes, batch 8, 360x480, random weights, SGD momentum 0.9),
for ``float32`` (matmul precision "highest", as gpu.py's fp32) and ``mixed_bfloat16``:
Keras' train step (``jax.jit(model.train_step)``, as ``fit`` compiles it), the pure-JAX step
of gpu.py's (c), the forward pass, and (c) with one stage written otherwise (gpu.py's
``stage_variant``): (f) Keras' max pooling, (g) separable (matmul) and (h) polyphase
upsampling.

Setup (a separate venv, so that the main environment's jax stays CPU-only)::

    python -m venv --system-site-packages /tmp/gpuaot
    /tmp/gpuaot/bin/pip install "jax-cuda12-plugin[with-cuda]==$(python -c \
        'import jax; print(jax.__version__)')" "jax-cuda12-pjrt==<same version>"
    # about 3 GB of NVIDIA wheels (cuDNN 0.7 GB, cuBLAS, nvcc for ptxas, ...)

Usage::

    /tmp/gpuaot/bin/python benchmarks/jax_gpu_aot.py [--target h200|h100] [--smoke]
        [--out benchmarks/results/jax_gpu_aot.md] [--hlo-dir DIR] [--only keras,pure,...]

Writes the Markdown to ``--out`` and the figures to the same path with ``.json``. Exits 2,
saying how to install it, when no JAX CUDA plugin is installed. ``--smoke``: a narrow model at
64x64, batch 2 (about a minute).

Example:
    >>> import subprocess, sys
    >>> subprocess.run([sys.executable, "benchmarks/jax_gpu_aot.py", "--help"],
    ...                capture_output=True).returncode
    0
"""

import argparse
import collections
import contextlib
import gzip
import importlib.metadata
import json
import math
import os
import re
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin")
# GpuTargetConfigProto text: what XLA's GPU compiler needs to know of the device. H100 SXM
# and H200 share the SM 9.0 die (132 SMs, 50 MiB L2); the H200 has 141 GB at 4.8 TB/s.
TARGET = """gpu_device_info {{
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_core: 233472
  threads_per_core_limit: 2048
  core_count: 132
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: {bandwidth}
  l2_cache_size: 52428800
  clock_rate_ghz: 1.98
  device_memory_size: {memory}
  shared_memory_per_block_optin: 232448
  cuda_compute_capability {{ major: 9 minor: 0 }}
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 8 }}
runtime_version {{ major: 12 minor: 8 }}
device_description_str: "{name}"
"""
TARGETS = {"h200": dict(name="NVIDIA H200", bandwidth=4800000000000, memory=150121218048),
           "h100": dict(name="NVIDIA H100 80GB HBM3", bandwidth=3352320000000,
                        memory=84929347584)}
PROGRAMS = ("keras", "pure", "forward", "keras_pooling", "separable_upsampling",
            "polyphase_upsampling", "folded_padding", "conv1_kgrad_pad100", "conv1_kgrad_padded")
LABELS = {"keras": "Keras train step", "pure": "pure-JAX step (c)", "forward": "forward",
          "keras_pooling": "(f) (c) + Keras' max pooling",
          "separable_upsampling": "(g) (c) + matmul upsampling",
          "polyphase_upsampling": "(h) (c) + polyphase upsampling",
          "folded_padding": "(i) (c) + input padding folded into conv1_1 (before 12-06)",
          "conv1_kgrad_pad100": "conv1_1 kernel gradient alone, padding=100 in the conv",
          "conv1_kgrad_padded": "conv1_1 kernel gradient alone, input padded first"}
DTYPE_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "s8": 1, "u8": 1,
               "pred": 1, "f64": 8, "s64": 8, "u64": 8}
PLUMBING = {"parameter", "get-tuple-element", "tuple", "bitcast", "constant"}
INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.-]+) = (.*?) ([a-z][\w-]*)\((.*)$")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=sorted(TARGETS), default="h200")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "jax_gpu_aot.md"))
    parser.add_argument("--hlo-dir", default=None,
                        help="where the optimized HLO of each program goes, gzipped")
    parser.add_argument("--only", default=",".join(PROGRAMS),
                        help=f"programs, comma-separated, of {PROGRAMS}")
    parser.add_argument("--policies", default="float32,mixed_bfloat16")
    parser.add_argument("--smoke", action="store_true", help="narrow model, 64x64, batch 2")
    args = parser.parse_args(argv)
    args.only = [name for name in args.only.split(",") if name]
    for name in args.only:
        if name not in PROGRAMS:
            parser.error(f"--only: unknown program {name!r}; expected some of {PROGRAMS}")
    return args


def cuda_plugin():
    """The installed JAX CUDA plugin's 'name version', or None."""
    for name in PLUGINS:
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def shape_bytes(text):
    """Bytes of every array shape ``f32[8,64]{1,0}`` in ``text`` (a result type)."""
    total = 0
    for dtype, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", text):
        size = 1
        for d in filter(None, dims.split(",")):
            size *= int(d)
        total += size * DTYPE_BYTES.get(dtype, 4)
    return total


def computations(text):
    """{name: [instruction lines]} of an HLO module, and the entry computation's name."""
    found, entry, current = {}, None, None
    for line in text.splitlines():
        head = re.match(r"^(ENTRY )?%?([\w.-]+) .*\{\s*$", line)
        if head and not line.startswith(" "):
            current = head.group(2)
            found[current] = []
            entry = current if head.group(1) else entry
        elif current is not None and line.startswith(" "):
            found[current].append(line)
    return found, entry


def dims_of(type_text):
    """[8, 360, 480, 3] of ``f32[8,360,480,3]{3,2,1,0}`` (the first array of a tuple)."""
    found = re.search(r"\[([\d,]*)\]", type_text or "")
    return [int(d) for d in found.group(1).split(",") if d] if found else None


def convolution(line, types):
    """One cuDNN convolution call: target, dtype, result and operand dims, labels, window,
    and its multiply-adds x 2 (GFLOP) from the shapes: 2 x the forward convolution's output
    elements x the filter's elements per output feature (labels b01f_o01i->b01f)."""
    target = re.search(r'custom_call_target="__cudnn\$(\w+)"', line).group(1)
    result = re.match(r"^\s*(?:ROOT )?%?[\w.-]+ = \(?(\w+)\[([\d,]*)\]", line)
    window = re.search(r"window=\{([^}]*)\}", line)
    labels = re.search(r"dim_labels=(\S+?),", line)
    window = window.group(1) if window else ""
    labels = labels.group(1) if labels else "?"
    names = re.search(r"custom-call\(([^)]*)\)", line).group(1).split(", ")
    operands = [dims_of(types.get(name.lstrip("%"))) for name in names]
    out = dims_of(result.group(0) + "]")
    gflop = None
    if labels == "b01f_o01i->b01f" and len(operands) >= 2 and None not in operands[:2]:
        y, f = {"convBackwardInput": (operands[0], operands[1]),
                "convBackwardFilter": (operands[1], out)}.get(target, (out, operands[1]))
        gflop = 2 * math.prod(y) * math.prod(f) / f[0] / 1e9
    return {"target": target, "dtype": result.group(1), "dims": result.group(2),
            "operands": operands, "dim_labels": labels, "window": window, "gflop": gflop,
            "input_dilated": "lhs_dilate" in window}


def unusual(conv):
    """A convolution that is not a plain small-window one: strided (the transposed
    convolutions and their gradients), dilated, reversed or with a window over 16 wide."""
    sizes = re.search(r"size=(\d+)x(\d+)", conv["window"])
    wide = sizes is not None and max(int(sizes.group(1)), int(sizes.group(2))) > 16
    return wide or any(k in conv["window"] for k in ("stride", "dilate", "reversal"))


def hlo_stats(text):
    """What the optimized HLO holds: convolutions, transposes, copies, fusions, kernels."""
    comps, entry = computations(text)
    types = {}
    for lines in comps.values():
        for line in lines:
            match = INSTRUCTION.match(line)
            if match:
                types[match.group(1)] = match.group(2)
    ops = collections.Counter()
    big = []
    transposes = copies = 0
    transpose_bytes = copy_bytes = 0
    convs = []
    for name, lines in comps.items():
        for line in lines:
            match = INSTRUCTION.match(line)
            if not match:
                continue
            op = match.group(3)
            ops[op] += 1
            if op == "transpose":
                transposes += 1
                transpose_bytes += shape_bytes(match.group(2))
            elif op == "copy":
                copies += 1
                copy_bytes += shape_bytes(match.group(2))
            elif op == "custom-call" and "__cudnn$conv" in line:
                convs.append(convolution(line, types))
            if op in ("transpose", "copy"):
                big.append((shape_bytes(match.group(2)) / 2**20, op, match.group(2)))
    kernels = collections.Counter()
    for line in comps.get(entry, []):
        match = INSTRUCTION.match(line)
        if match and match.group(3) not in PLUMBING:
            op = match.group(3)
            if op == "fusion":
                kind = re.search(r"kind=(\w+)", line)
                op = f"fusion {kind.group(1) if kind else '?'}"
            elif op == "custom-call":
                op = "custom-call " + re.search(r'custom_call_target="([^"]+)"',
                                                line).group(1)
            kernels[op] += 1
    layouts = collections.Counter(f"{c['target']} {c['dtype']} {c['dim_labels']}"
                                  for c in convs)
    return {"instructions": sum(ops.values()), "ops": dict(ops.most_common()),
            "cudnn_convolutions": len(convs), "conv_layouts": dict(layouts.most_common()),
            "input_dilated_convolutions": [c for c in convs if c["input_dilated"]],
            "conv_gflop": sum(c["gflop"] or 0 for c in convs),
            "unusual_convolutions": [c for c in convs if unusual(c)],
            "largest_transposes_copies": sorted(big, reverse=True)[:6],
            "transposes": transposes, "transpose_mb": transpose_bytes / 2**20,
            "copies": copies, "copy_mb": copy_bytes / 2**20,
            "select_and_scatter": ops["select-and-scatter"], "fusions": ops["fusion"],
            "entry_kernels": sum(kernels.values()), "entry_ops": dict(kernels.most_common()),
            "convolutions": convs}


def program_stats(compiled, save_as=None):
    """hlo_stats of a compiled program, with XLA's cost and memory analyses where given."""
    text = compiled.as_text()
    if save_as:
        os.makedirs(os.path.dirname(os.path.abspath(save_as)), exist_ok=True)
        with gzip.open(save_as, "wt", encoding="utf-8") as f:
            f.write(text)
    stats = hlo_stats(text)
    try:
        cost = compiled.cost_analysis()
        cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
    except Exception:  # noqa: BLE001 - not every platform reports it
        cost = {}
    stats["gflop"] = cost.get("flops", 0.0) / 1e9 if cost else None
    try:
        memory = compiled.memory_analysis()
        stats["memory_mb"] = {k: getattr(memory, f"{k}_size_in_bytes") / 2**20
                              for k in ("argument", "output", "alias", "temp")}
    except Exception:  # noqa: BLE001
        stats["memory_mb"] = None
    return stats


def build(args, policy):
    """The model (SGD momentum, the library's loss), the train state and one batch, as
    ShapeDtypeStructs on the compile-only device."""
    import keras

    import gpu

    keras.config.set_dtype_policy(policy)
    worker = types.SimpleNamespace(plan=gpu.plan(types.SimpleNamespace(
        smoke=args.smoke, repeats=2, num_classes=None)), jax=args.jax)
    model = gpu.build_keras_model(worker)
    gpu.keras_compile(model, "jax")
    model.optimizer.build(model.trainable_variables)
    return worker, model


def compile_programs(args, policy, log):
    import keras

    import gpu

    jax = args.jax
    worker, model = build(args, policy)
    p = worker.plan
    batch, size = p["train_batch"], p["train_size"]

    def on_device(value):
        return jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=args.sharding)

    x = jax.ShapeDtypeStruct((batch, *size, 3), "float32", sharding=args.sharding)
    y = jax.ShapeDtypeStruct((batch, *size), "int32", sharding=args.sharding)
    state = tuple([on_device(v.value) for v in variables] for variables in (
        model.trainable_variables, model.non_trainable_variables, model.optimizer.variables,
        model.metrics_variables))
    found = {}

    def run(name, lower):
        if name not in args.only:
            return
        start = time.perf_counter()
        note = None
        try:
            lowered = lower()
            try:
                compiled = lowered.compile()
            except Exception as e:  # noqa: BLE001
                if "tile sizes" not in str(e):  # Triton GEMM tiling, without autotuning
                    raise
                note = "Triton GEMM off: its default tiling failed without autotuning"
                compiled = lowered.compile({"xla_gpu_enable_triton_gemm": False})
            save = (os.path.join(args.hlo_dir, f"{policy}_{name}.hlo.txt.gz")
                    if args.hlo_dir else None)
            found[name] = dict(program_stats(compiled, save),
                               compile_s=time.perf_counter() - start)
            if note:
                found[name]["note"] = note
        except Exception as e:  # noqa: BLE001 - one failed program must not stop the run
            found[name] = {"error": f"{type(e).__name__}: {e}"[:600]}
        log(f"[{policy}] {name}: " + (found[name].get("error") or (
            f"{found[name]['cudnn_convolutions']} cuDNN convolutions, "
            f"{found[name]['entry_kernels']} kernels, {found[name]['compile_s']:.0f} s")))

    run("keras", lambda: jax.jit(model.train_step, donate_argnums=0).lower(state, (x, y)))
    pure, pure_state = gpu.pure_jax_step(worker, model)
    pure_structs = [[on_device(v) for v in group] for group in pure_state]
    run("pure", lambda: pure.lower(*pure_structs, x, y))

    def forward(trainable, non_trainable, images):
        return model.stateless_call(trainable, non_trainable, images, training=False)[0]

    run("forward", lambda: jax.jit(forward).lower(*state[:2], x))
    for variant in gpu.STAGE_VARIANTS:
        if variant in args.only:
            step, _ = gpu.pure_jax_step(worker, model)
            with gpu.stage_variant(worker, model, variant):  # traced within the block
                run(variant, lambda: step.lower(*pure_structs, x, y))
    kernel = on_device(model.trainable_variables[0].value)  # conv1_1's, (3, 3, 3, 64)
    for name in ("conv1_kgrad_pad100", "conv1_kgrad_padded"):
        grad = conv1_kernel_gradient(jax, keras.config.dtype_policy().compute_dtype,
                                     barrier=name.endswith("padded"))
        run(name, lambda: grad.lower(x, kernel))
    return found


def conv_line(c):
    gflop = "?" if c["gflop"] is None else f"{c['gflop']:.1f}"
    operands = " ".join("x".join(map(str, d)) for d in c["operands"] if d)
    return (f"{c['target']} {c['dtype']}[{c['dims']}] <- {operands} {{{c['window']}}} "
            f"{gflop} GFLOP")


def conv1_kernel_gradient(jax, dtype, barrier):
    """The kernel gradient of conv1_1 alone (3x3, padding 100 as FCN's) of sum(y**2)/2: the
    padding in the convolution (as the model has it), or the input padded beforehand behind
    an optimization barrier (so that XLA cannot fold the padding back into the convolution).

    Example:
        >>> import jax
        >>> grad = conv1_kernel_gradient(jax, "float32", barrier=True)
        >>> grad(jax.numpy.ones((1, 4, 4, 3)), jax.numpy.ones((3, 3, 3, 2))).shape
        (3, 3, 3, 2)
    """
    jnp = jax.numpy

    def loss(kernel, x):
        x, kernel, pad = x.astype(dtype), kernel.astype(dtype), ((100, 100), (100, 100))
        if barrier:
            x = jax.lax.optimization_barrier(jnp.pad(x, ((0, 0), *pad, (0, 0))))
            pad = ((0, 0), (0, 0))
        y = jax.lax.conv_general_dilated(x, kernel, (1, 1), pad,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(jnp.square(y.astype("float32"))) / 2

    return jax.jit(lambda x, kernel: jax.grad(loss)(kernel, x))


def render(report):
    lines = [f"# FCN-8s on JAX compiled for an {report['target_name']} without a GPU "
             f"({report['date']})", "",
             f"CPU: {report['cpu']}", f"Versions: {report['versions']}",
             f"Sizes: {report['sizes']}. Deviceless AOT: nothing runs and nothing is "
             "autotuned (convolution algorithms and GEMM back ends are XLA's defaults); "
             "layouts, fusions and the cuDNN calls are what XLA compiles for SM 9.0. Conv "
             "GFLOP: per step, counted from the cuDNN calls' shapes. Entry kernels: the "
             "entry computation's fusions, custom calls and copies (about the kernels "
             "launched per step).", ""]
    for policy, programs in report["policies"].items():
        lines += [f"## {policy}", "", "| program | cuDNN convs | conv GFLOP | transposes "
                  "(MiB) | copies (MiB) | select-and-scatter / scatter | fusions | "
                  "entry kernels | temp MiB | args MiB |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name, s in programs.items():
            if "error" in s:
                lines.append(f"| {LABELS[name]} | {s['error'][:200]} |||||||||")
                continue
            mem = s["memory_mb"] or {}
            lines.append(
                f"| {LABELS[name]} | {s['cudnn_convolutions']} | {s['conv_gflop']:.0f} | "
                f"{s['transposes']} ({s['transpose_mb']:.0f}) | {s['copies']} "
                f"({s['copy_mb']:.0f}) | {s['select_and_scatter']} / "
                f"{s['ops'].get('scatter', 0)} | {s['fusions']} | {s['entry_kernels']} | "
                f"{mem.get('temp', 0):.0f} | {mem.get('argument', 0):.0f} |")
        lines.append("")
        for name, s in programs.items():
            if "error" in s:
                continue
            lines.append(f"- {LABELS[name]}{' (' + s['note'] + ')' if 'note' in s else ''}: "
                         "cuDNN calls by kind, dtype, labels: "
                         + "; ".join(f"{k} x{v}" for k, v in s["conv_layouts"].items()))
            for c in s["unusual_convolutions"]:
                lines.append(f"  - strided/wide/reversed: {conv_line(c)}")
            lines.append("  - largest transposes/copies: " + ", ".join(
                f"{op} {t.split('{')[0]} {mb:.0f} MiB"
                for mb, op, t in s["largest_transposes_copies"][:4]))
            lines.append("  - entry kernels: " + ", ".join(
                f"{k} {v}" for k, v in s["entry_ops"].items()))
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    plugin = cuda_plugin()
    if plugin is None:
        print(f"jax_gpu_aot: no JAX CUDA plugin installed (looked for {', '.join(PLUGINS)}); "
              "install one matching jax in a separate venv, see this script's docstring",
              file=sys.stderr)
        return 2
    os.environ["JAX_PLATFORMS"] = "cpu"  # no GPU here: the CUDA target is compile-only
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import jax
    import keras

    import gpu

    if keras.backend.backend() != "jax":
        print(f"jax_gpu_aot: KERAS_BACKEND is {keras.backend.backend()!r}; expected 'jax'",
              file=sys.stderr)
        return 2
    args.jax = jax
    from jax.experimental import topologies

    config = TARGET.format(**TARGETS[args.target])
    topology = topologies.get_topology_desc(platform="cuda", target_config=config,
                                            topology="1x1x1")
    args.sharding = jax.sharding.SingleDeviceSharding(topology.devices[0])
    model_name, flags = gpu.cpu_line()
    versions = dict(gpu.versions(), plugin=plugin)
    report = {"target": args.target, "target_name": TARGETS[args.target]["name"],
              "target_config": config, "date": time.strftime("%Y-%m-%d"),
              "cpu": f"{model_name} ({' '.join(flags)}), {os.cpu_count()} cores",
              "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
              "sizes": ("smoke: narrow FCN-8s, batch 2, 64x64, 3 classes" if args.smoke else
                        "FCN-8s VGG16, 21 classes, batch 8, 360x480"),
              "policies": {}}
    print(f"CPU: {report['cpu']}\nVersions: {report['versions']}\n"
          f"Target: {topology.devices[0]}", flush=True)
    for policy in args.policies.split(","):
        precision = (jax.default_matmul_precision("highest") if policy == "float32"
                     else contextlib.nullcontext())
        with precision:
            report["policies"][policy] = compile_programs(
                args, policy, lambda line: print(line, flush=True))
    keras.config.set_dtype_policy("float32")
    text = render(report)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.splitext(args.out)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
