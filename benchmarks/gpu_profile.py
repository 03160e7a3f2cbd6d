"""Device-kernel profiles of a train step for ``benchmarks/gpu.py``: where the time goes.

Both frameworks run the same convolutions through cuDNN (XLA calls it too), so the kernels'
names say what each one is. ``jax_profile`` and ``torch_profile`` run a step a few times under
the framework's profiler and return the device time per step by kind of kernel (convolution
forward, input gradient, weight gradient, matmuls, pooling, layout transposes, copies, other
fused elementwise work), the busiest kernels, and the wall time per step: wall time minus
kernel time is the time the device waited for the host. Without a GPU (``--smoke`` on a CPU),
the host's XLA or ATen operations stand in for the kernels, so that the code path is tested.
"""

import collections
import glob
import re
import shutil
import tempfile
import time

# (kind, patterns in a lower-cased kernel name), first match wins. cuDNN's and CUTLASS'
# kernels name the convolution pass (fprop / dgrad / wgrad); older engines spell it out.
KINDS = (
    ("conv weight grad", ("wgrad", "bprop_filter", "backward_filter", "convolve_dw",
                          "filter_grad")),
    ("conv input grad", ("dgrad", "bprop_data", "backward_data", "convolve_dx")),
    ("layout transpose", ("nchwtonhwc", "nhwctonchw", "transpose", "permute")),
    ("conv forward", ("fprop", "implicit_convolve", "winograd", "convolve", "implicit_gemm",
                      "cudnn", "conv2d", "convolution")),
    ("matmul", ("gemm", "cublas", "matmul", "dot", "cutlass", "xmma", "addmm", "linear")),
    ("pooling", ("select_and_scatter", "pool")),
    ("copy / memset", ("memcpy", "memset", "copy", "fill")),
    ("reduction", ("reduce", "reduction", "sum", "softmax", "nll_loss")),
)
TOP = 15  # busiest kernels kept per profile


def guarded(profile, *args, **kwargs):
    """``profile(*args)``, or ``{"status": "failed: ..."}``: a profiler that cannot run (no
    CUPTI, say) must not cost the timing it is attached to."""
    import traceback

    try:
        return profile(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - reported in the record instead
        traceback.print_exc()
        return {"status": f"failed: {type(e).__name__}: {e}"[:400]}


def kernel_kind(name):
    lowered = name.lower()
    for kind, patterns in KINDS:
        if any(p in lowered for p in patterns):
            return kind
    return "elementwise / other"


def summarize(events, steps, wall_s, source):
    """``events``: (name, microseconds) pairs over ``steps`` steps -> the profile dict."""
    per_name = collections.defaultdict(lambda: [0, 0.0])
    for name, us in events:
        per_name[name][0] += 1
        per_name[name][1] += us
    kinds = collections.defaultdict(float)
    for name, (_, us) in per_name.items():
        kinds[kernel_kind(name)] += us / 1000 / steps
    busiest = sorted(per_name.items(), key=lambda kv: -kv[1][1])[:TOP]
    kernel_ms = sum(kinds.values())
    return {"source": source, "steps": steps, "wall_ms": 1000 * wall_s / steps,
            "kernel_ms": kernel_ms, "kinds_ms": dict(sorted(kinds.items())),
            "distinct_kernels": len(per_name),
            "top": [{"name": name[:120], "calls": calls / steps, "ms": us / 1000 / steps,
                     "kind": kernel_kind(name)} for name, (calls, us) in busiest]}


NOT_KERNELS = ("XLA Modules", "XLA Ops", "Steps", "Source", "Launch", "TraceMe")


def _stats(event, limit=300):
    """An event's statistics (the profiler's own, ``_``-prefixed, left out), as text."""
    try:
        return {k: str(v)[:limit] for k, v in event.stats if not str(k).startswith("_")}
    except Exception:  # noqa: BLE001 - statistics are a bonus
        return {}


def busiest_ops(events, steps, top=TOP):
    """Time per step by XLA operation (each event's ``hlo_op`` statistic, else its name): the
    HLO instruction behind the kernels, with the first event's statistics (on a GPU they
    name the kernel and, on the XLA Ops line, the instruction's shapes)."""
    per_op = {}
    for event in events:
        stats = _stats(event)
        op = stats.get("hlo_op") or event.name
        found = per_op.setdefault(op, {"op": op, "calls": 0, "us": 0.0, "kernels": [],
                                       "stats": stats})
        found["calls"] += 1
        found["us"] += event.duration_ns / 1000
        if event.name not in found["kernels"] and len(found["kernels"]) < 3:
            found["kernels"].append(event.name[:120])
    ranked = sorted(per_op.values(), key=lambda o: -o["us"])[:top]
    return [{"op": o["op"], "calls": o["calls"] / steps, "ms": o["us"] / 1000 / steps,
             "kernels": o["kernels"], "stats": o["stats"]} for o in ranked]


def _jax_events(path):
    """The kernel events of the trace in ``path``, where they came from, the device planes'
    lines (events, ms: to check that choice) and the events of the XLA Ops line (GPU)."""
    from jax.profiler import ProfileData

    data = ProfileData.from_file(path)
    gpu = [p for p in data.planes if p.name.startswith("/device:GPU")]
    if gpu:
        lines = [line for plane in gpu for line in plane.lines]
        seen = {}
        for line in lines:
            events = list(line.events)
            seen[line.name] = [len(events), sum(e.duration_ns for e in events) / 1e6]
        streams = [line for line in lines if line.name.startswith("Stream")] or [
            line for line in lines if not line.name.startswith(NOT_KERNELS)]
        kernels = [e for line in streams for e in line.events]
        xla_ops = [e for line in lines if line.name == "XLA Ops" for e in line.events]
        return kernels, "GPU kernels", seen, xla_ops
    host = [p for p in data.planes if p.name == "/host:CPU"]
    kernels = [e for plane in host for line in plane.lines if line.name.startswith("tf_XLA")
               for e in line.events]
    return kernels, "host XLA operations (no GPU)", {}, []


def jax_profile(jax, call, steps=3):
    """``call()`` (returns JAX arrays) ``steps`` times under ``jax.profiler.trace``."""
    folder = tempfile.mkdtemp(prefix="jax_profile_")
    try:
        jax.block_until_ready(call())
        with jax.profiler.trace(folder):
            start = time.perf_counter()
            for _ in range(steps):
                jax.block_until_ready(call())
            wall = time.perf_counter() - start
        paths = glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)
        if not paths:
            return {"status": "no trace written"}
        kernels, source, lines, xla_ops = _jax_events(paths[0])
        found = summarize([(e.name, e.duration_ns / 1000) for e in kernels], steps, wall, source)
        return dict(found, device_lines=lines, ops=busiest_ops(kernels, steps),
                    xla_ops=busiest_ops(xla_ops, steps))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def torch_profile(torch, call, steps=3):
    """``call()`` ``steps`` times under ``torch.profiler``; CUDA kernels when there is a GPU."""
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    call()
    if cuda:
        torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            call()
            if cuda:
                torch.cuda.synchronize()
        wall = time.perf_counter() - start
    events = []
    for e in prof.events():
        device_type = str(getattr(e, "device_type", ""))
        if cuda:
            if device_type.endswith("CUDA"):
                events.append((e.name, e.time_range.elapsed_us()))
        elif not e.cpu_children and re.match(r"aten::", e.name):  # leaves stand in for kernels
            events.append((e.name, e.time_range.elapsed_us()))
    return summarize(events, steps, wall, "CUDA kernels" if cuda else "ATen leaf operations")
