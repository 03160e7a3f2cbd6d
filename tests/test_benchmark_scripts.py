"""The benchmark scripts' command lines (benchmarks/*.py): a bad flag value exits with status 2 and
one line on stderr naming it, before anything runs; a saved result is not replaced without
--overwrite; every report folder can be chosen. The scripts run in a subprocess with flags that
stop them while parsing (fast, no model built)."""


import pytest

from tool_flags import one_error_line, run_script

# Review 7 gave every benchmark these command-line checks.

@pytest.mark.parametrize("script, args, expected", [
    ("benchmarks/inference.py", ["--models", "nope"],
     "error: argument --models: expected a comma-separated list of vgg16, mobilenet_v2. "
     "Received: 'nope'"),
    ("benchmarks/inference.py", ["--sizes", "360x480,abc"],
     "error: argument --sizes: expected HEIGHTxWIDTH with positive sizes (e.g. 180x240). "
     "Received: 'abc'"),
    ("benchmarks/inference.py", ["--threads", "0"],
     "error: argument --threads: expected an integer >= 1. Received: '0'"),
    ("benchmarks/train_step.py", ["--what", "nope"],
     "error: argument --what: expected a comma-separated list of train, forward. "
     "Received: 'nope'"),
    ("benchmarks/bf16_agreement.py", ["--size", "abc"],
     "error: argument --size: expected HEIGHTxWIDTH with positive sizes (e.g. 180x240). "
     "Received: 'abc'"),
    ("benchmarks/bf16_agreement.py", ["--model", "no.keras"],
     "error: --model: expected a .keras file. Not found: 'no.keras'"),
    ("benchmarks/bf16_train_crash.py", ["--size", "abc"],
     "error: argument --size: expected HEIGHTxWIDTH with positive sizes (e.g. 180x240). "
     "Received: 'abc'"),
    ("benchmarks/bf16_train_crash.py", ["--steps", "-1"],
     "error: argument --steps: expected an integer >= 1. Received: '-1'"),
    ("benchmarks/bf16_train_crash.py", ["--variants", "f32,nope"],
     "error: unknown --variants ['nope']; expected some of f32, "),
    ("benchmarks/predict.py", ["--frames", "0"],
     "error: argument --frames: expected an integer >= 1. Received: '0'"),
    ("benchmarks/predict.py", ["--model", "no.keras"],
     "error: --model: expected a .keras file. Not found: 'no.keras'"),
    ("benchmarks/refine.py", ["--model", "no.keras"],
     "error: --model: expected a .keras file. Not found: 'no.keras'"),
    ("benchmarks/refine.py", ["--model", "x", "--input_size", "3"],
     "error: argument --input_size: expected HEIGHTxWIDTH with positive sizes (e.g. 180x240). "
     "Received: '3'"),
    ("benchmarks/roofline.py", ["--threads", "0"],
     "error: argument --threads: expected an integer >= 1. Received: '0'"),
    ("benchmarks/roofline.py", ["--layers", "abc"],
     "error: argument --layers: expected HEIGHTxWIDTH with positive sizes (e.g. 180x240). "
     "Received: 'abc'"),
    ("benchmarks/temporal.py", ["--model", "x", "--size", "3"],
     "error: argument --size: expected H,W with positive sizes (e.g. 180,240). Received: '3'"),
    ("benchmarks/data_prep.py", ["--repeats", "0"],
     "error: argument --repeats: expected an integer >= 1. Received: '0'"),
    ("benchmarks/trunks.py", ["--size", "-5"],
     "error: argument --size: expected an integer >= 1. Received: '-5'"),
    ("benchmarks/trunks_camvid.py", ["--trunks", "vgg17"],
     "error: --trunks: expected some of alexnet, vgg16, googlenet, mobilenet_v2, resnet50, "
     "resnet101; --minutes > 0. Received: --trunks='vgg17' --minutes=5.0"),
    ("benchmarks/jax_pool_gradient.py", ["--batch", "-1"], "error: --size must be HxW"),
    ("benchmarks/jax_upsampling.py", ["--widths", "8,8"],
     "error: argument --widths: expected 5 comma-separated positive widths (e.g. 8,8,16,16,16)."
     " Received: '8,8'"),
    ("benchmarks/jax_upsampling.py", ["--size", "0x5"],
     "error: argument --size: expected HEIGHTxWIDTH with positive sizes (e.g. 180x240). "
     "Received: '0x5'"),
    ("benchmarks/torch_compile.py", ["--size", "0x5"],
     "error: argument --size: expected HEIGHTxWIDTH with positive sizes (e.g. 180x240). "
     "Received: '0x5'"),
    ("benchmarks/torch_compile.py", ["--widths", "a,b"],
     "error: --widths must be 5 comma-separated ints. Received: 'a,b'"),
])
def test_a_bad_flag_is_one_line_and_status_2(script, args, expected):
    # a report, should a check be missing, goes to a folder that cannot be made
    output = [] if script.endswith("bf16_train_crash.py") else ["--output_dir", "/proc/r7"]
    line = one_error_line(run_script(script, *args, *output))
    assert line.startswith(expected), line


@pytest.mark.parametrize("script, name, args", [
    ("benchmarks/predict.py", "predict", []),
    ("benchmarks/refine.py", "refine", ["--model", __file__, "--camvid", "{camvid}"]),
    ("benchmarks/roofline.py", "roofline", []),
    ("benchmarks/trunks.py", "trunks", []),
    ("benchmarks/data_prep.py", "data_prep", []),
    ("benchmarks/jax_pool_gradient.py", "jax_pool_gradient", []),
    ("benchmarks/jax_upsampling.py", "jax_upsampling", []),
    ("benchmarks/torch_compile.py", "torch_compile", []),
    ("benchmarks/jax_eager.py", "jax_eager", []),
])
def test_an_existing_report_is_kept_without_overwrite(tmp_path, script, name, args):
    # Before: predict.py and refine.py replaced it silently; the others exited with status 1.
    camvid = tmp_path / "camvid"
    camvid.mkdir()
    (camvid / "val.txt").write_text("")
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{name}.md").write_text("saved")
    args = [a.replace("{camvid}", str(camvid)) for a in args]
    line = one_error_line(run_script(script, *args, "--output_dir", str(out)))
    assert line == f"error: {out / name}.md exists; pass --overwrite to replace it."
    assert (out / f"{name}.md").read_text() == "saved"


def test_help_of_every_argparse_benchmark_exits_0():
    for script in ("bf16_agreement", "bf16_train_crash", "data_prep", "jax_eager",
                   "jax_pool_gradient",
                   "jax_upsampling", "predict",
                   "refine", "roofline", "temporal", "torch_compile", "torch_layout", "trunks",
                   "trunks_camvid"):
        done = run_script(f"benchmarks/{script}.py", "--help")
        assert done.returncode == 0, (script, done.stderr)
        assert "--output_dir" in done.stdout or script == "bf16_train_crash", script


# absl scripts import TensorFlow (through keras_fcn) to parse their flags: a few seconds each.
@pytest.mark.slow
@pytest.mark.parametrize("script, args, expected", [
    ("benchmarks/export.py", ["--help"], None),
    ("benchmarks/export.py", ["--num_images=-3"], "error: flag --num_images=-3: expected >= 1."),
    ("benchmarks/export.py", ["--backbones=vgg16,nope"],
     "error: flag --backbones=['vgg16', 'nope']: expected a comma-separated list of vgg16, "
     "mobilenet_v2. Received: 'vgg16,nope'."),
    ("benchmarks/export.py", ["--input_size=360"],
     "error: flag --input_size=360: expected HEIGHTxWIDTH"),
    ("benchmarks/quantization_error.py", ["--help"], None),
    ("benchmarks/quantization_error.py", [],
     "error: Give a trained model: --model=... or --models=a.keras,b.keras"),
    ("benchmarks/quantization_error.py", ["--models=no.keras"],
     "error: flag --models=['no.keras']: expected existing .keras files."),
])
def test_absl_benchmarks_help_and_bad_flags(script, args, expected):
    # Before: absl.app.run, so --help and a bad flag both exited with status 1.
    done = run_script(script, *args)
    if expected is None:
        assert done.returncode == 0, done.stderr
        assert "--output_dir" in done.stdout
    else:
        assert one_error_line(done).startswith(expected)


@pytest.mark.slow
def test_input_pipeline_has_an_output_dir_and_keeps_a_saved_report(tmp_path):
    # Before: no output flag; it always wrote benchmarks/results/input_pipeline.{md,json}.
    (tmp_path / "input_pipeline.json").write_text("{}")
    line = one_error_line(run_script("benchmarks/input_pipeline.py", "--output_dir", str(tmp_path)))
    assert line == (f"error: {tmp_path / 'input_pipeline.json'} exists; pass --overwrite to "
                    "replace it.")
    line = one_error_line(run_script("benchmarks/input_pipeline.py", "--images", "-1"))
    assert line == "error: argument --images: expected an integer >= 1. Received: '-1'"


@pytest.mark.slow  # ~37 s in the suite: a benchmark's own variants (its flags are checked above)
def test_jax_upsampling_forms_agree_with_keras(tmp_path):
    """benchmarks/jax_upsampling.py at a small size: every form of every FCN-8s upsampling
    layer gives Keras' output, at the shapes the model feeds them."""
    import json
    pytest.importorskip("jax")
    done = run_script("benchmarks/jax_upsampling.py", "--size", "64x96", "--batch", "2",
                      "--repeats", "1", "--widths", "4,4,8,8,8", "--fc_units", "8",
                      "--output_dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "jax_upsampling.json").read_text())
    rows = report["layers"]
    assert [(r["layer"], r["form"]) for r in rows] == [
        (layer, form) for layer in ("upscore2", "upscore_pool4", "upscore8")
        for form in ("keras", "polyphase", "separable")]
    # 64x96 padded by 100: score_fr 3x4, upscore2 -> 8x10 (+ crop), upscore8 input 18x22
    assert [r["input"] for r in rows[::3]] == [[2, 3, 4, 21], [2, 8, 10, 21], [2, 18, 22, 21]]
    for r in rows:
        assert r["rel_diff"] < 1e-5 and r["forward_ms"] > 0 and r["input_grad_ms"] > 0, r
    assert report["whole_step"] is None
    assert "| upscore8 | 2x18x22x21 | 16 / 8 | polyphase |" in (
        tmp_path / "jax_upsampling.md").read_text()


def test_array_pipeline_compares_jitter_forms_on_generated_pairs(tmp_path):
    """benchmarks/array_pipeline.py without CamVid: generated pairs, both jitter forms per
    thread count, and the BLAS form it times equals the library's per-channel form."""
    import json
    import os
    import sys

    import numpy as np

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = run_script("benchmarks/array_pipeline.py", "--camvid_dir", str(tmp_path / "none"),
                      "--images", "8", "--rounds", "1", "--workers", "1",
                      "--output_dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "generated pairs instead" in done.stdout
    report = json.loads((tmp_path / "array_pipeline.json").read_text())
    assert [(r["form"], r["workers"]) for r in report["results"]] == [
        ("per channel", 1), ("BLAS matmul", 1)]
    assert all(r["images_per_s"] > 0 and r["cpu_ms_per_image"] > 0 for r in report["results"])
    assert report["data"] == "generated 480x360 PNG pairs" and report["images"] == 8
    sys.path.insert(0, os.path.join(repo, "benchmarks"))
    try:
        import array_pipeline
    finally:
        sys.path.pop(0)
    from keras_fcn.data.jitter import apply_jitter

    image = np.random.default_rng(0).uniform(0, 255, (5, 7, 3)).astype(np.float32)
    factors = [20.0, 1.3, 0.6, 0.4]
    np.testing.assert_allclose(array_pipeline.matmul_jitter(image, factors),
                               apply_jitter(image, factors), atol=1e-3)
    bad = run_script("benchmarks/array_pipeline.py", "--workers", "0,x", "--no_save")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == (
        "error: --workers must be comma-separated integers >= 1. Received: '0,x'")


@pytest.mark.slow  # ~37 s in the suite: a benchmark's own variants (its flags are checked above)
def test_torch_layout_trains_both_forms_to_the_same_losses(tmp_path):
    """benchmarks/torch_layout.py at a small size: Keras' ops and keras_fcn's channels-last
    ones train the same model to the same losses (to float round-off), and the report says so."""
    import json

    import numpy as np
    pytest.importorskip("torch")
    done = run_script("benchmarks/torch_layout.py", "--size", "40x48", "--batch", "1",
                      "--warmup", "1", "--repeats", "2", "--widths", "4,4,8,8,8",
                      "--fc_units", "8", "--output_dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "torch_layout.json").read_text())
    assert len(report["losses"]["keras"]) == 3 and report["losses_rel_diff"] < 1e-6
    np.testing.assert_allclose(report["losses"]["keras"], report["losses"]["keras_fcn"],
                               rtol=1e-6)
    assert report["losses"]["keras"][0] != report["losses"]["keras"][-1]  # it trained
    assert all(len(report["seconds"][mode]) == 2 for mode in ("keras", "keras_fcn"))
    assert "Losses of all 3 steps equal" in (tmp_path / "torch_layout.md").read_text()


@pytest.mark.slow  # 40 s: the uncompiled JAX step compiles every op (the default's own check
# is in backend_cases.py: model.jit_compile after compile_model on each backend)
def test_jax_eager_compares_the_compiled_default_with_the_uncompiled_step(tmp_path):
    """benchmarks/jax_eager.py at a small size: compile_model's default compiles on JAX
    (model.jit_compile True), ``jit_compile=False`` does not, and both give the same losses."""
    import json

    pytest.importorskip("jax")
    done = run_script("benchmarks/jax_eager.py", "--size", "40x48", "--batch", "1",
                      "--warmup", "1", "--repeats", "1", "--widths", "4,4,8,8,8",
                      "--fc_units", "8", "--output_dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "jax_eager.json").read_text())
    assert report["jit_compile"] == {"eager": False, "default": True}
    assert report["first_loss_rel_diff"] < 1e-6 and len(report["losses"]["default"]) == 2
    assert "the uncompiled step's speed" in (tmp_path / "jax_eager.md").read_text()
