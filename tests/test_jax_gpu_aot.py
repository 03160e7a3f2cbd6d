"""benchmarks/jax_gpu_aot.py on a CPU-only environment: its refusal without the CUDA plugin
and its reading of GPU HLO text (no compilation: the plugin lives in a separate venv).

Example:
    python -m pytest -q -n 0 tests/test_jax_gpu_aot.py
"""

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "jax_gpu_aot.py")


def load():
    spec = importlib.util.spec_from_file_location("jax_gpu_aot", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Lines as XLA prints them for SM 9.0 (shortened from a deviceless compile of FCN-8s).
CONV = (", window={size=1x1}, dim_labels=b01f_o01i->b01f, "
        'custom_call_target="__cudnn$convForward"')
UP = (", window={size=4x4 stride=2x2}, dim_labels=b01f_o01i->b01f, "
      'custom_call_target="__cudnn$convBackwardInput"')
HLO = f"""HloModule jit_step

%wrapped_transpose_computation (param_0: f32[1,1,4096,21]) -> f32[21,1,1,4096] {{
  %param_0 = f32[1,1,4096,21]{{3,2,1,0}} parameter(0)
  ROOT %transpose.1 = f32[21,1,1,4096]{{3,2,1,0}} transpose(%param_0), dimensions={{3,0,1,2}}
}}

ENTRY %main (x: f32[8,12,16,4096], k: f32[1,1,4096,21], d: f32[8,12,16,21]) -> f32[] {{
  %x = f32[8,12,16,4096]{{3,2,1,0}} parameter(0)
  %k = f32[1,1,4096,21]{{3,2,1,0}} parameter(1)
  %d = f32[8,12,16,21]{{3,2,1,0}} parameter(2)
  %wrapped_transpose = f32[21,1,1,4096]{{3,2,1,0}} fusion(%k), kind=kInput, calls=%t
  %conv = (f32[8,12,16,21]{{3,2,1,0}}, u8[0]{{0}}) custom-call(%x, %wrapped_transpose){CONV}
  %up = (f32[8,26,34,21]{{3,2,1,0}}, u8[0]{{0}}) custom-call(%d, %wrapped_transpose.2){UP}
  %wrapped_transpose.2 = f32[21,4,4,21]{{3,2,1,0}} fusion(%k), kind=kInput, calls=%t
  %copy.1 = f32[8,12,16,21]{{3,2,1,0}} copy(%d)
  ROOT %r = f32[] constant(0)
}}
"""

def test_exits_2_naming_the_plugin_when_it_is_missing():
    if any(importlib.util.find_spec(name) for name in ("jax_cuda12_plugin",
                                                      "jax_cuda13_plugin")):
        pytest.skip("a JAX CUDA plugin is installed in this environment")
    proc = subprocess.run([sys.executable, SCRIPT, "--smoke"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert "no JAX CUDA plugin installed" in proc.stderr
    assert "jax-cuda12-plugin" in proc.stderr


def test_unknown_program_is_refused():
    proc = subprocess.run([sys.executable, SCRIPT, "--only", "keras,nope"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "'nope'" in proc.stderr


def test_hlo_stats_reads_convolutions_transposes_and_kernels():
    stats = load().hlo_stats(HLO)
    assert stats["cudnn_convolutions"] == 2
    forward, up = stats["convolutions"]
    assert forward["operands"] == [[8, 12, 16, 4096], [21, 1, 1, 4096]]
    # 1x1 score layer: 2 x (8*12*16 pixels) x 21 outputs x 4096 inputs
    assert forward["gflop"] == pytest.approx(2 * 8 * 12 * 16 * 21 * 4096 / 1e9)
    # transposed convolution (dgrad): each of the 8*12*16*21 inputs feeds 4*4*21 outputs
    assert up["gflop"] == pytest.approx(2 * 8 * 12 * 16 * 21 * 4 * 4 * 21 / 1e9)
    assert stats["unusual_convolutions"] == [up]
    assert stats["transposes"] == 1
    assert stats["transpose_mb"] == pytest.approx(21 * 4096 * 4 / 2**20)
    assert stats["copies"] == 1 and stats["copy_mb"] == pytest.approx(8 * 12 * 16 * 21 * 4
                                                                      / 2**20)
    assert stats["entry_kernels"] == 5  # 2 transpose fusions, 2 convolutions, 1 copy
    assert stats["entry_ops"]["custom-call __cudnn$convBackwardInput"] == 1
