"""benchmarks/gpu.py on the CPU (--smoke): what the one H200 run will write, checked here.

The fast tests run the PyTorch port and the equivalence check on JAX with TensorFlow made
unimportable (--hide-tf), as on the GPU machine, and the budget cut-off; the slow ones run every
configuration (about 2 minutes each on 2 cores).
"""

import gzip
import json
import math
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("jax")

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "gpu.py")
TABLE_COLUMNS = ("torch_fp32", "torch_bf16", "keras_jax_fp32", "keras_jax_bf16",
                 "keras_torch_fp32", "keras_torch_bf16", "torch_tf32")


def run_benchmark(tmp_path, *flags, timeout=900):
    """Runs the script with ``flags``; returns (completed process, report dict, Markdown)."""
    env = {k: v for k, v in os.environ.items() if k != "OUT"}  # no copy into a device $OUT
    out = tmp_path / "gpu.md"
    proc = subprocess.run([sys.executable, SCRIPT, "--smoke", "--out", str(out), *flags],
                          capture_output=True, text=True, timeout=timeout, env=env)
    assert out.exists() and out.with_suffix(".json").exists(), proc.stdout[-3000:] + proc.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    return proc, report, out.read_text()


def assert_timed(found, batch):
    """A timed item: median ms, img/s consistent with it, the repeats, a first call."""
    assert found["status"] == "ok", found
    assert found["batch"] == batch
    assert 0 < found["ms"] < 60_000
    assert math.isclose(found["img_s"], 1000 * batch / found["ms"], rel_tol=1e-9)
    assert len(found["times_ms"]) >= 2 and min(found["times_ms"]) > 0
    assert found["first_call_s"] > 0
    assert found["peak_bytes"] is None  # no GPU here: "n/a" in the table


def assert_equivalent(found, sizes=((67, 93), (31, 45))):
    assert found["verdict"] == "PASS", found
    assert [tuple(row["size"]) for row in found["sizes"]] == list(sizes)
    for row in found["sizes"]:
        assert row["max_abs_logit"] > 0
        assert 0 <= row["ratio"] <= 1e-4
        assert math.isclose(row["ratio"], row["max_abs_diff"] / row["max_abs_logit"])
        assert row["argmax_agree"] >= 0.99
    assert found["worst_ratio"] == max(row["ratio"] for row in found["sizes"]) <= 1e-4


def test_equivalence_on_jax_without_tensorflow(tmp_path):
    proc, report, markdown = run_benchmark(tmp_path, "--only", "torch_fp32,equiv_jax",
                                           "--hide-tf")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert set(report["configs"]) == {"torch_fp32", "equiv_jax"}
    assert report["tf_guard"]["verdict"] == "PASS", report["tf_guard"]
    assert_equivalent(report["equivalence"]["jax"])
    assert "[equiv_jax] equivalence: PASS" in proc.stdout
    items = report["configs"]["torch_fp32"]["items"]
    assert_timed(items["forward_b1"], 1)
    assert_timed(items["forward_b2"], 2)
    assert_timed(items["train"], 2)
    # the table: a row per measure, the port's figures in its column, the equivalence rows
    rows = {line.split(" | ")[0]: line for line in markdown.splitlines()}
    for label in ("| forward b1 64x64", "| forward b2 64x64", "| train b2 64x64",
                  "| peak GPU memory GiB (fwd b1 / b2 / train)", "| jax"):
        assert label in rows, label
    assert f"| {items['forward_b1']['ms']:.2f} ms" in rows["| forward b1 64x64"]
    assert "| n/a / n/a / n/a |" in rows["| peak GPU memory GiB (fwd b1 / b2 / train)"]
    assert "| jax | 67x93 |" in markdown and "| PASS |" in markdown
    assert "TensorFlow guard: PASS" in markdown
    # ratios need both sides: none here, and none claims a target
    assert all(row["value"] is None and row["met"] is None for row in report["ratios"])


def test_budget_skips_and_report_is_kept(tmp_path):
    proc, report, markdown = run_benchmark(
        tmp_path, "--only", "torch_fp32,keras_jax_fp32", "--budget-s", "0.5", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the port's worker starts within the budget (or not, on a slow machine) and times nothing
    torch_record = report["configs"]["torch_fp32"]
    if torch_record["status"] == "ok":
        assert set(torch_record["items"]) == {"forward_b1", "forward_b2", "train"}
        assert {v["status"] for v in torch_record["items"].values()} == {"skipped: budget"}
    else:
        assert torch_record["status"] == "skipped: budget" and not torch_record["items"]
    assert report["configs"]["keras_jax_fp32"]["status"] == "skipped: budget"
    assert "skipped: budget" in markdown
    assert report["tf_guard"]["verdict"] == "n/a"
    # a second run does not overwrite the report without --overwrite
    again = subprocess.run([sys.executable, SCRIPT, "--smoke", "--out",
                            str(tmp_path / "gpu.md")], capture_output=True, text=True,
                           timeout=60)
    assert again.returncode != 0 and "pass --overwrite" in again.stderr
    assert json.loads((tmp_path / "gpu.json").read_text()) == report


def test_keras_torch_host_reads_are_counted_with_and_without_the_library_checks(tmp_path):
    """The eager Keras-torch step: the library's loss reads one value back (its label-range
    check, a device sync mid-step on a GPU); with the checks off, none; Keras' own reads
    (its optimizer) are counted apart."""
    proc, report, markdown = run_benchmark(tmp_path, "--hide-tf", "--only", "keras_torch_fp32")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    items = report["configs"]["keras_torch_fp32"]["items"]
    for name, ours in (("train", 1), ("train_unchecked", 0)):
        assert_timed(items[name], 2)
        reads = items[name]["host_reads"]
        assert reads.get("keras_fcn", 0) == ours, reads
        assert reads["keras"] >= 1, reads  # Keras' SGD reads its learning rate
    assert reads["keras"] == items["train"]["host_reads"]["keras"]
    section = markdown.split("## Keras-torch: host reads per train step")[1]
    assert "| fp32 | on (default) |" in section and "_tf.py:check_none 1" in section
    assert "| fp32 | off |" in section and "| 1.00x |" in section


@pytest.mark.slow
@pytest.mark.parametrize("tensorflow", ["--hide-tf", "--allow-tf"])
def test_smoke_run_fills_every_figure(tmp_path, tensorflow):
    """Every configuration, as on the H200 (TensorFlow hidden) and with TensorFlow installed."""
    proc, report, markdown = run_benchmark(tmp_path, tensorflow)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert report["smoke"] and not report["partial"]
    # hidden: keras_fcn must import without it; installed: it may come in (a warning)
    allowed = ("PASS",) if tensorflow == "--hide-tf" else ("PASS", "WARN")
    assert report["tf_guard"]["verdict"] in allowed, report["tf_guard"]
    for name, record in report["configs"].items():
        assert record["status"] == "ok", (name, record["status"])
    for name in TABLE_COLUMNS:
        items = report["configs"][name]["items"]
        assert_timed(items["forward_b1"], 1)
        assert_timed(items["forward_b2"], 2)
        assert_timed(items["train"], 2)
    for backend in ("jax", "torch"):
        assert_equivalent(report["equivalence"][backend])
    diagnostics = report["configs"]["jax_diagnostics"]["items"]
    for name in ("train_pure_jax", "train_fit_spe8", "train_tf32", "train_pure_jax_keras_pooling",
                 "train_pure_jax_folded_padding", "train_pure_jax_separable_upsampling",
                 "train_pure_jax_polyphase_upsampling"):
        assert_timed(diagnostics[name], 2)
    # (f) Keras' pooling: the same gradients bit for bit; (g), (h) the same sums in another order;
    # (i) the padding folded into conv1_1: its kernel gradient sums in another order
    assert diagnostics["train_pure_jax_keras_pooling"]["grad_rel_diff"] == 0.0
    assert diagnostics["train_pure_jax_folded_padding"]["grad_rel_diff"] < 1e-5
    assert diagnostics["train_pure_jax_separable_upsampling"]["grad_rel_diff"] < 1e-5
    assert diagnostics["train_pure_jax_polyphase_upsampling"]["grad_rel_diff"] < 1e-5
    bf16 = report["configs"]["jax_diagnostics_bf16"]["items"]  # bf16 sums: bf16 rounding
    for name in ("train_pure_jax", "train_fit_spe8", "train_pure_jax_folded_padding",
                 "train_pure_jax_separable_upsampling", "train_pure_jax_polyphase_upsampling"):
        assert_timed(bf16[name], 2)
    assert bf16["train_pure_jax_polyphase_upsampling"]["grad_rel_diff"] < 0.05
    assert "train_tf32" not in bf16 and "train_pure_jax_keras_pooling" not in bf16
    for name in ("torch_fp32", "torch_bf16", "keras_jax_fp32", "keras_jax_bf16"):
        profile = report["configs"][name]["items"]["train"]["profile"]
        assert profile["steps"] == 3 and profile["kernel_ms"] > 0 and profile["top"], name
        assert sum(profile["kinds_ms"].values()) == pytest.approx(profile["kernel_ms"])
    assert "## Where the device time goes" in markdown
    for batch in (1, 2):
        assert_timed(diagnostics[f"forward_b{batch}_bf16_weights"], batch)
    for precision in ("fp32", "bf16"):  # eager Keras-torch without the library's checks
        unchecked = report["configs"][f"keras_torch_{precision}"]["items"]["train_unchecked"]
        assert_timed(unchecked, 2)
        assert unchecked["host_reads"].get("keras_fcn", 0) == 0
    for precision in ("fp32", "bf16"):  # Keras-torch under torch.compile
        compiled = report["configs"][f"keras_torch_compiled_{precision}"]["items"]["train"]
        assert_timed(compiled, 2)
        assert compiled["graph_breaks"] == sum(compiled["graph_break_reasons"].values())
    assert "| fp32 | " in markdown.split("## Keras-torch with torch.compile")[1]
    # every ratio has both sides, and the ones with a target say whether it is met
    assert len(report["ratios"]) == 13
    for row in report["ratios"]:
        assert row["value"] > 0, row
        assert (row["met"] is None) == (row["target"] is None), row
    train_fp32 = report["ratios"][0]
    assert train_fp32["value"] == pytest.approx(
        report["configs"]["keras_jax_fp32"]["items"]["train"]["img_s"]
        / report["configs"]["torch_fp32"]["items"]["train"]["img_s"])
    assert "— |" not in markdown.split("## Ratios")[0]  # no empty cell in the main table
    assert "| (c) pure JAX" in markdown and "| torch | 67x93 |" in markdown


@pytest.mark.slow  # compiles full-size XLA programs (~45 s on 2 cores)
def test_compiled_programs_keras_step_is_the_pure_jax_step(tmp_path):
    """jax_programs (compile only, so it runs on the CPU): Keras' train step hands XLA the same
    work as the hand-written JAX step: the same FLOPs, bytes and convolutions."""
    proc, report, markdown = run_benchmark(tmp_path, "--only", "jax_programs", "--hide-tf",
                                           timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    items = report["configs"]["jax_programs"]["items"]
    assert list(items) == ["programs_float32", "programs_mixed_bfloat16"]
    for name, found in items.items():
        assert found["status"] == "ok", (name, found)
        keras_step, pure, forward = (found[k] for k in ("keras_train_step", "pure_jax_step",
                                                          "forward"))
        assert keras_step["gflop_per_image"] == pytest.approx(pure["gflop_per_image"], rel=1e-6)
        assert keras_step["gb_accessed_per_image"] == pytest.approx(
            pure["gb_accessed_per_image"], rel=0.02)
        assert keras_step["ops"]["convolution"] == pure["ops"]["convolution"]
        # backward: kernel and input gradients, about two forward passes' convolutions
        assert 2 * forward["gflop_per_image"] < keras_step["gflop_per_image"]
        assert sum(keras_step["ops"].values()) < keras_step["instructions"]
    assert found["policy"] == "mixed_bfloat16"
    assert "| float32 | keras_train_step |" in markdown
    hlo = tmp_path / "gpu_hlo"
    assert sorted(p.name for p in hlo.iterdir()) == sorted(
        f"{policy}_{program}.hlo.txt.gz" for policy in ("float32", "mixed_bfloat16")
        for program in ("keras_train_step", "pure_jax_step", "forward"))
    with gzip.open(hlo / "float32_keras_train_step.hlo.txt.gz", "rt") as f:
        text = f.read()
    assert text.startswith("HloModule") and text.count(" convolution(") == (
        items["programs_float32"]["keras_train_step"]["ops"]["convolution"])


# Eighth session's mends.


def test_a_smoke_run_of_the_gpu_benchmark_does_not_write_the_gpu_results_file():
    import importlib.util
    import os
    import tempfile
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("gpu_bench",
                                                  os.path.join(root, "benchmarks", "gpu.py"))
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    smoke = gpu.parse_args(["--smoke"]).out
    assert smoke.startswith(os.path.join(tempfile.gettempdir(), "keras_fcn_gpu_smoke_"))
    assert smoke.endswith("gpu.md") and gpu.parse_args(["--smoke"]).out != smoke  # a new one
    assert gpu.parse_args([]).out == os.path.join(root, "benchmarks", "results", "gpu.md")
    assert gpu.parse_args(["--smoke", "--out", "a.md"]).out == "a.md"


# Eleventh session: kernel profiles and the polyphase upsampling variant.


def load_benchmark_module(name):
    import importlib.util
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", os.path.join(root, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, kind", [
    ("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc", "conv forward"),
    ("sm90_xmma_dgrad_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc", "conv input grad"),
    ("sm80_xmma_wgrad_implicit_gemm_indexed_tf32f32_tf32f32_f32_nhwckrsc", "conv weight grad"),
    ("cudnn::ops::nchwToNhwcKernel<float, float, float, false, true>", "layout transpose"),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "matmul"),
    ("void at::native::max_pool_backward_nhwc<c10::BFloat16>", "pooling"),
    ("select_and_scatter_fusion", "pooling"),
    ("loop_convert_fusion", "elementwise / other"),  # "convert" is not a convolution
    ("input_reduce_fusion_3", "reduction"),
    ("Memset (Device)", "copy / memset"),
])
def test_kernel_kinds_from_names(name, kind):
    profile = load_benchmark_module("gpu_profile")
    assert profile.kernel_kind(name) == kind


def test_profile_summary_per_step():
    profile = load_benchmark_module("gpu_profile")
    events = [("a_fprop_kernel", 1000.0), ("a_fprop_kernel", 3000.0), ("loop_add_fusion", 500.0),
              ("b_wgrad_kernel", 2000.0)]
    found = profile.summarize(events, steps=2, wall_s=0.01, source="test")
    assert found["kernel_ms"] == pytest.approx(3.25)  # 6.5 ms over 2 steps
    assert found["wall_ms"] == pytest.approx(5.0)
    assert found["kinds_ms"] == pytest.approx({"conv forward": 2.0, "conv weight grad": 1.0,
                                               "elementwise / other": 0.25})
    assert [k["name"] for k in found["top"]] == ["a_fprop_kernel", "b_wgrad_kernel",
                                                 "loop_add_fusion"]
    assert found["top"][0]["calls"] == 1.0 and found["top"][0]["ms"] == pytest.approx(2.0)
    assert found["distinct_kernels"] == 3


def test_jax_profile_reads_the_trace_on_a_cpu():
    import jax
    import jax.numpy as jnp
    profile = load_benchmark_module("gpu_profile")
    step = jax.jit(lambda x: jnp.tanh(x @ x).sum())
    x = jnp.ones((256, 256))
    found = profile.jax_profile(jax, lambda: step(x), steps=3)
    assert found["source"] == "host XLA operations (no GPU)" and found["steps"] == 3
    assert found["kernel_ms"] > 0 and found["wall_ms"] > 0 and found["top"]
    assert sum(found["kinds_ms"].values()) == pytest.approx(found["kernel_ms"])
    # the same events by XLA operation (their hlo_op statistic): the two matmul-and-tanh
    # kernels are there, with their statistics
    assert found["ops"] and found["ops"][0]["stats"].get("hlo_module", "").startswith("jit_")
    assert found["xla_ops"] == []  # the XLA Ops line is a GPU plane's


def numpy_transposed_convolution(x, kernel, strides):
    """'valid' transposed convolution by scattering each input pixel (Keras kernel layout)."""
    import numpy as np
    n, h, w, _ = x.shape
    kh, kw, c_out, _ = kernel.shape
    sh, sw = strides
    out = np.zeros((n, (h - 1) * sh + kh, (w - 1) * sw + kw, c_out))
    for i in range(h):
        for j in range(w):
            out[:, i * sh:i * sh + kh, j * sw:j * sw + kw] += np.einsum(
                "nc,hwoc->nhwo", x[:, i, j], kernel)
    return out


@pytest.mark.parametrize("kernel_size, strides", [((4, 4), (2, 2)), ((16, 16), (8, 8)),
                                                  ((7, 5), (4, 2)), ((3, 3), (1, 1))])
def test_polyphase_upsampling_is_a_transposed_convolution(kernel_size, strides):
    """Any kernel (not only the bilinear one), kernels that are no multiple of the stride."""
    import jax
    import numpy as np
    gpu = load_benchmark_module("gpu")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 6, 3))
    kernel = rng.standard_normal((*kernel_size, 4, 3))
    expected = numpy_transposed_convolution(x, kernel, strides)
    with jax.default_matmul_precision("highest"):
        found = np.asarray(gpu.polyphase_upsampling(jax, jax.numpy.asarray(x, "float32"),
                                                    kernel.astype("float32"), strides))
    assert found.shape == expected.shape
    np.testing.assert_allclose(found, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def test_a_failing_profiler_costs_only_its_profile():
    profile = load_benchmark_module("gpu_profile")

    def broken(torch, call):
        raise RuntimeError("CUPTI not found")

    found = profile.guarded(broken, None, lambda: None)
    assert found == {"status": "failed: RuntimeError: CUPTI not found"}
    gpu = load_benchmark_module("gpu")
    report = {"configs": {"torch_bf16": {"items": {"train": {
        "status": "ok", "profile": found}}}}}
    assert gpu.profile_lines(report) == [
        "", "Profile of PyTorch port bf16 autocast + channels_last: failed: RuntimeError: "
        "CUPTI not found."]
