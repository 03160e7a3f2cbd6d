"""benchmarks/_workers.py: a worker that aborts (PyTorch's bf16 training on an AMX Xeon did,
docs/speed.md) fails its mode only; the other modes it serves are measured."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import _workers  # noqa: E402

FAKE = """
import json, os, sys
for line in sys.stdin:
    mode = json.loads(line)["key"][0]
    if mode == "torch_bf16":
        os.abort()
    print(json.dumps({"seconds": 0.5}), flush=True)
"""


def test_an_aborting_mode_fails_alone(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(FAKE)
    workers = {"torch": _workers.Worker("torch", str(script), 1)}
    seconds, _ = _workers.measure(workers, ["vgg16", [8, 8], "train"],
                                  ["torch_fp32", "torch_bf16", "torch_channels_last"], 2)
    _workers.close_workers(workers)
    assert seconds["torch_fp32"] == [0.5, 0.5]
    assert seconds["torch_channels_last"] == [0.5, 0.5]
    assert seconds["torch_bf16"] == "worker died (exit -6)"
