"""Train-step (and forward) time of the FCN-8s in every execution mode, in one run.

Batch 1, random weights and labels, 2 threads per framework. Each framework setting runs in
its own worker process (benchmarks/_workers.py; ``TF_ENABLE_ONEDNN_OPTS`` must be set before
TensorFlow is imported), and the parent asks the workers in turn, mode after mode
(A B C A B C ...), so background load hits every mode alike; the tables give medians and
ratios. The CPU model, its ISA flags and the load average are printed beside the figures.

Keras modes: ``graph`` (``tf.function``, oneDNN on: TF's default), ``xla``
(``jit_compile=True``), ``eigen`` (``TF_ENABLE_ONEDNN_OPTS=0``), ``bf16`` (the model under
``mixed_bfloat16`` via ``keras_fcn.runtime.with_precision``, logits and loss float32) and
``bf16_xla``. PyTorch modes (VGG16 only, when torch imports): ``torch_fp32``,
``torch_channels_last``, ``torch_compile`` (``torch.compile`` of the channels_last model;
skipped when compiling takes over 3 minutes) and ``torch_bf16`` (``torch.autocast``). A train
step is forward, loss, backward and an SGD update. For the forward pass with keras_fcn's own
defaults and TFLite next to these, see benchmarks/inference.py.

Usage:
    python benchmarks/train_step.py [--what train,forward] [--models vgg16,mobilenet_v2]
        [--sizes 360x480,500x500] [--modes graph,xla,eigen,bf16,bf16_xla,torch_fp32,...]
        [--repeats 3] [--threads 2] [--name train_step] [--overwrite]

Writes benchmarks/results/<name>.md and .json.
"""

import datetime
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _workers  # noqa: E402
import _outputs  # noqa: E402
from _outputs import refuse_to_overwrite  # noqa: E402

MODES = _workers.KERAS_MODES + _workers.TORCH_MODES


def parse_args(argv=None):
    parser = _outputs.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", default="train", help="train and/or forward, comma-separated")
    parser.add_argument("--models", default="vgg16", help="vgg16 and/or mobilenet_v2")
    parser.add_argument("--sizes", default="360x480", help="HEIGHTxWIDTH, comma-separated")
    return _workers.parse_run_args(parser, "train_step", MODES, argv)


def table(results, info_line):
    lines = [f"# FCN-8s step times, batch 1 ({datetime.date.today()})", "",
             f"CPU: {info_line}", "",
             "| step | model | size | mode | median ms | x graph | x torch_fp32 | load |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        medians = _workers.medians(r["seconds"])
        for mode, t in r["seconds"].items():
            if mode not in medians:
                lines.append(f"| {r['what']} | {r['model']} | {r['size']} | {mode} | "
                             f"failed: {t} | | | |")
                continue
            ratio = {b: f"{medians[mode] / medians[b]:.2f}" if b in medians else ""
                     for b in ("graph", "torch_fp32")}
            lines.append(f"| {r['what']} | {r['model']} | {r['size']} | {mode} | "
                         f"{1000 * medians[mode]:,.0f} | {ratio['graph']} | "
                         f"{ratio['torch_fp32']} | {min(r['loads']):.1f}-{max(r['loads']):.1f} |")
    return "\n".join(lines)


def main():
    args = parse_args()
    if args.worker:
        return _workers.serve(args.worker, args.threads, _workers.step_runner)
    from keras_fcn import runtime

    output = os.path.join(args.output_dir, args.name)
    refuse_to_overwrite(output, args.overwrite)
    info = runtime.cpu_info(gpu=False)
    modes = args.modes.split(",")
    if not _workers.torch_available():
        print("PyTorch is not installed: no PyTorch modes.")
        modes = [m for m in modes if m not in _workers.TORCH_MODES]
    info_line = f"{runtime.describe(info)}, {args.threads} threads, median of {args.repeats}"
    print(info_line, flush=True)
    workers = _workers.start_workers(modes, __file__, args.threads)
    results = _workers.run_grid(workers, args, modes, args.what.split(","), table, info_line)
    _workers.finish(workers, args, results, table, info, info_line)
    return None


if __name__ == "__main__":
    main()
