"""The Keras-torch train step of an FCN-8s with Keras' convolution and pooling ops against
keras_fcn's channels-last ones, in one run.

On the PyTorch backend Keras runs a channels-last convolution by copying its input to NCHW and
then back to PyTorch's channels-last memory format (and a max pool by the first copy); the
gradients copy back. ``keras_fcn.layers.Conv2D`` and ``MaxPooling2D`` hand PyTorch the NHWC
memory as it is (``keras_fcn._torch_layout``). Two models with the same random weights are
trained side by side on the same batch with the library's loss and SGD momentum, one with the
library's ops, one with them switched off (Keras' own ops: ``_torch_layout``'s functions
return None, as where the fast path does not apply); their losses must stay equal (bit for bit
for single layers, tests/backend_cases.py; over many steps of the model, to float round-off:
1e-7 apart after 9 steps once, from the order of some sum), and their steps are timed alternating (A B A B ...) so that background load hits both alike.

Usage:
    python benchmarks/torch_layout.py [--widths 16,32,64,128,128] [--fc_units 256]
        [--batch 2] [--size 180x240] [--warmup 2] [--repeats 5] [--name torch_layout]
        [--overwrite] [--output_dir DIR]

``--widths ""`` (with ``--fc_units 0``) is the paper's full-width VGG16. Writes
benchmarks/results/<name>.md and .json; prints the CPU model and its ISA flags beside them.
"""

import datetime
import os
import statistics
import sys

os.environ["KERAS_BACKEND"] = "torch"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _outputs import cpu_line, refuse_to_overwrite, save_report  # noqa: E402
from torch_compile import alternate, build, parse_args  # noqa: E402

MODES = ("keras", "keras_fcn")
LABELS = {"keras": "Keras' ops (NCHW copies)", "keras_fcn": "keras_fcn's (channels-last as is)"}


def switched(mode):
    """Context: ``keras_fcn._torch_layout`` on (keras_fcn) or off (Keras' own ops)."""
    import contextlib

    from keras_fcn import _torch_layout

    @contextlib.contextmanager
    def scope():
        saved = _torch_layout.conv2d, _torch_layout.max_pool2d
        if mode == "keras":
            _torch_layout.conv2d = _torch_layout.max_pool2d = lambda *args: None
        try:
            yield
        finally:
            _torch_layout.conv2d, _torch_layout.max_pool2d = saved
    return scope()


def main(argv=None):
    args = parse_args(argv, name="torch_layout", doc=__doc__, warmup=2)
    base = os.path.join(args.output_dir, args.name)
    refuse_to_overwrite(base, args.overwrite)
    import keras  # before anything imports TensorFlow (README: torch's triton and TF clash)
    import torch

    cpu = cpu_line()
    print(f"CPU: {cpu}; torch {torch.__version__}, keras {keras.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)
    models = {mode: build(args, jit_compile=False) for mode in MODES}
    times, losses, first = alternate(args, models, switched)
    median = {mode: statistics.median(times[mode]) for mode in MODES}
    speedup = median["keras"] / median["keras_fcn"]
    equal = losses["keras"] == losses["keras_fcn"]
    rel_diff = max(abs(a - b) / abs(a) for a, b in zip(losses["keras"], losses["keras_fcn"]))
    agree = rel_diff < 1e-5
    widths = ",".join(map(str, args.widths)) if args.widths else "64,128,256,512,512"
    setting = (f"VGG16 FCN-8s, widths {widths}, fc {args.fc_units or 4096}, batch "
               f"{args.batch}, {args.size[0]}x{args.size[1]}, 11 classes, float32, SGD momentum")
    lines = [
        f"# Keras-torch train step: Keras' conv/pool ops against keras_fcn's channels-last "
        f"ones ({datetime.date.today()})", "",
        f"CPU: {cpu}. torch {torch.__version__}, keras {keras.__version__}, "
        f"{torch.get_num_threads()} threads, Python {sys.version.split()[0]}.", "",
        f"{setting}; eager `train_on_batch`, medians of {args.repeats} steps after "
        f"{args.warmup} warm-up steps, alternating.", "",
        "| ops | s/step | first step s |", "|---|---|---|",
        *[f"| {LABELS[mode]} | {median[mode]:.3f} | {first[mode]:.2f} |" for mode in MODES], "",
        f"keras_fcn's ops: **{speedup:.2f}x** the speed of Keras' ops. Losses of all "
        f"{len(losses['keras'])} steps "
        + ("equal bit for bit" if equal else
           f"{'equal to' if agree else 'DIFFERENT beyond'} {rel_diff:.1e} (relative)") + " "
        f"(first {losses['keras'][0]:.6f}, last {losses['keras'][-1]:.6f} / "
        f"{losses['keras_fcn'][-1]:.6f})."]
    print("\n".join(lines), flush=True)
    save_report(args.output_dir, args.name, "\n".join(lines),
                {"cpu": cpu, "torch": torch.__version__, "keras": keras.__version__,
                 "threads": torch.get_num_threads(), "setting": setting, "seconds": times,
                 "median_s": median, "first_step_s": first, "speedup": speedup,
                 "losses": losses, "losses_equal": equal, "losses_rel_diff": rel_diff})
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
