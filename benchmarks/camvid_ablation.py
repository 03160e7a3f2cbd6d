r"""Issue 16 ablation: which recipe options help a CamVid model on a drive it never saw.

Every line trains the MobileNetV2 FCN-8s from random init (the recipe of docs/camvid.md) on
CamVid with drive 0006R0 held out, changing one option, for the same budget of **CPU
minutes** (the training process's CPU time, all threads: `--budget_clock=cpu`), pinned to one
core (`taskset`), two lines at a time on a 2-core machine. A CPU budget keeps the comparison
fair when other jobs share the machine: they slow a line down but do not shorten it.

For each line the best checkpoint (selected on the held-out drive, as a user holding out a
drive would) is evaluated on the held-out drive 0006R0 (the headline) and on the usual
same-drive `val` (101 frames of drive 0016E5, which the training split also contains), so the
gap is visible. `tta` evaluates the baseline's checkpoint with multi-scale + flip TTA.

Usage (resumable: finished lines are kept; delete a line's folder to rerun it):
    nohup python benchmarks/camvid_ablation.py --data_dir=../shared/data/camvid \
        --runs_dir=../runs/ablation --cpu_minutes=10 > ../runs/ablation.log 2>&1 &
    # the final recipe for one CPU-hour, with a name of your own ({E}, the baseline's epochs
    # in the budget, needs the baseline's run in --runs_dir: give the epochs here instead)
    python benchmarks/camvid_ablation.py --lines=final --cpu_minutes=60 --cores=1 \
        --custom="final:--blur=1.5 --lr_schedule=poly --epochs=190"

Writes benchmarks/results/camvid_ablation.md and .json (or --name).
"""

import concurrent.futures
import os
import shutil
import statistics
import subprocess
import sys
import time

from keras_fcn import io

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOLDOUT = "0006R0"

BASE = ["--dataset=camvid", f"--holdout={HOLDOUT}", "--model=fcn8s", "--backbone=mobilenet_v2",
        "--weights=none", "--image_size=180,240", "--crop_size=180,240",
        "--scale_range=0.8,1.25", "--flip", "--optimizer=adam", "--learning_rate=1e-3",
        "--class_weights=median", "--batch_size=4", "--dropout=0.2", "--epochs=500",
        "--export=false", "--budget_clock=cpu", "--verbose=2"]

# name: (flags changed from BASE, what it tests). {E}: the epochs the baseline reached.
LINES = {
    "base": ([], "baseline (docs/quantization.md recipe, held-out drive)"),
    "photometric": (["--photometric=0.5"], "colour: brightness, contrast, saturation, hue"),
    "blur": (["--blur=1.5"], "Gaussian blur of half the images, std up to 1.5 px"),
    "scale_wide": (["--scale_range=0.5,2"], "scales 0.5-2 (half resolution crops)"),
    "scale_full": (["--image_size=", "--crop_size=360,480", "--scale_range=0.5,2"],
                   "scales 0.5-2, full-resolution 360x480 crops (4x pixels a step)"),
    "wd": (["--weight_decay=1e-4"], "weight decay 1e-4 (base 5e-4)"),
    "dropout": (["--dropout=0.5"], "dropout 0.5 (base 0.2)"),
    "smoothing": (["--label_smoothing=0.1"], "label smoothing 0.1"),
    "poly": (["--lr_schedule=poly", "--epochs={E}"], "poly lr decay over the budget"),
    "cosine": (["--lr_schedule=cosine", "--warmup_epochs=1", "--epochs={E}"],
               "cosine lr decay with 1 warm-up epoch"),
    "ema": (["--ema_decay=0.99"], "EMA of the weights, decay 0.99"),
}
TTA = ["--scales=0.75,1,1.25", "--flip"]


def pinned(core):
    """A command prefix pinning a process to one core (none without taskset)."""
    return ["taskset", "-c", str(core)] if shutil.which("taskset") else []


def run(cmd, log_path, core):
    """Runs ``cmd`` pinned to ``core``, its output to ``log_path``; raises on failure."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS="1")
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        code = subprocess.call(pinned(core) + cmd, stdout=log, stderr=subprocess.STDOUT,
                               env=env, cwd=ROOT)
    if code:
        raise RuntimeError(f"{cmd[1]} failed (exit {code}); see {log_path}")


def evaluate(model, data_dir, out, core, log, extra=()):
    """tools/evaluate.py on ``model``; returns its results (cached in ``out``)."""
    if not os.path.exists(out):
        run([sys.executable, "tools/evaluate.py", f"--model={model}", "--dataset=camvid",
             f"--data_dir={data_dir}", f"--output={out}", *extra], log, core)
    return io.read_json(out, "Evaluation")


def wait_for_base(out_dir):
    """Waits until the baseline line has finished (lines that need it are queued last)."""
    while not os.path.exists(os.path.join(out_dir, "base.result.json")):
        time.sleep(10)


def base_epochs(out_dir, cpu_minutes):
    """The epochs the baseline fits in ``cpu_minutes`` (median CPU seconds of its epochs)."""
    wait_for_base(out_dir)
    history = io.read_json(os.path.join(out_dir, "base", "history.json"), "Baseline history")
    per_epoch = statistics.median(e["cpu_seconds"] for e in history)
    return max(2, int(cpu_minutes * 60 // per_epoch))


def train_line(name, flags, args, core):
    """Trains one line (unless done) and evaluates its best checkpoint both ways."""
    run_dir, meta = os.path.join(args.runs_dir, name), os.path.join(args.runs_dir, name + ".")
    if os.path.exists(meta + "result.json"):
        return io.read_json(meta + "result.json", "Line result")
    os.makedirs(args.runs_dir, exist_ok=True)
    log = meta + "log"
    if "{E}" in " ".join(flags):
        flags = [f.replace("{E}", str(base_epochs(args.runs_dir, args.cpu_minutes)))
                 for f in flags]
    start = time.time()
    run([sys.executable, "examples/train.py", *BASE, *args.model_flags.split(), *flags,
         f"--data_dir={args.data_dir}", f"--seed={args.seed}", f"--output_dir={run_dir}",
         f"--max_minutes_per_stage={args.cpu_minutes}", "--overwrite"], log, core)
    wall = time.time() - start
    history = io.read_json(os.path.join(run_dir, "history.json"), "Training history")
    best = os.path.join(run_dir, "best.keras")
    held = evaluate(best, args.data_dir, meta + "heldout.json", core, log,
                    [f"--holdout={HOLDOUT}"])
    same = evaluate(best, args.data_dir, meta + "val.json", core, log)
    scores = [e.get("val_mean_iu", 0.0) for e in history]
    result = {"name": name, "flags": flags, "epochs": len(history),
              "best_epoch": 1 + scores.index(max(scores)),
              "cpu_minutes": sum(e["cpu_seconds"] for e in history) / 60,
              "wall_minutes": wall / 60, "heldout": held, "val": same, "core": core}
    io.write_json(meta + "result.json", result)
    return result


def tta_line(args, core):
    """The baseline's best checkpoint with multi-scale + flip TTA on the held-out drive."""
    best, meta = os.path.join(args.runs_dir, "base", "best.keras"), os.path.join(args.runs_dir,
                                                                                "tta.")
    wait_for_base(args.runs_dir)
    held = evaluate(best, args.data_dir, meta + "heldout.json", core, meta + "log",
                    [f"--holdout={HOLDOUT}", *TTA])
    same = evaluate(best, args.data_dir, meta + "val.json", core, meta + "log", TTA)
    return {"name": "tta", "flags": TTA, "heldout": held, "val": same}


def iu(results):
    return 100 * results["mean_iu"]


def report(results, args, cpu):
    """The Markdown table: one line per option, held-out and same-drive figures."""
    base = next((r for r in results if r["name"] == "base"), None)
    lines = [f"# CamVid recipe ablation on a held-out drive ({HOLDOUT})", "",
             f"Written by `benchmarks/camvid_ablation.py` on {time.strftime('%Y-%m-%d %H:%M')}. "
             f"CPU: {cpu}. Each line: one process pinned to one core, "
             f"{args.cpu_minutes:g} CPU-minutes of training (process CPU time), seed "
             f"{args.seed}; lines ran side by side on cores {args.cores}.", "",
             "Model and recipe (random init; each line adds its change): "
             f"`{' '.join(BASE + args.model_flags.split())}`. Train: drives 0001TP + 0016E5 "
             f"(367 frames); checkpoint selected on, and headline measured on, drive {HOLDOUT} "
             "(101 frames, never trained on); beside it the usual same-drive `val` (101 frames "
             "of 0016E5). Mean IU (%) at the full 360x480 labels.", "",
             "| line | change | epochs (best) | CPU-min | held-out mean IU | vs base | "
             "same-drive val | gap |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        held, same = iu(r["heldout"]), iu(r["val"])
        delta = f"{held - iu(base['heldout']):+.1f}" if base else ""
        epochs = f"{r['epochs']} ({r['best_epoch']})" if "epochs" in r else "-"
        minutes = f"{r['cpu_minutes']:.1f}" if "cpu_minutes" in r else "eval"
        change = LINES.get(r["name"], (None, " ".join(r["flags"])))[1]
        lines.append(f"| {r['name']} | {change} | {epochs} | {minutes} | {held:.1f} | {delta} "
                     f"| {same:.1f} | {same - held:.1f} |")
    import _outputs
    names = results[0]["heldout"]["class_names"] if results else []
    lines += ["", "Per-class IU (%) on the held-out drive:", ""]
    lines += _outputs.per_class_table(
        "line", names, [(r["name"], r["heldout"]["per_class_iu"]) for r in results])
    return "\n".join(lines)


def main(argv=None):
    import _outputs
    parser = _outputs.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default=_outputs.CAMVID_DIR)
    _outputs.add_runs_dir(parser, "../runs/ablation")
    parser.add_argument("--cpu_minutes", type=float, default=10.0)
    parser.add_argument("--lines", default=",".join(list(LINES) + ["tta"]))
    parser.add_argument("--custom", action="append", default=[],
                        help="NAME:FLAGS, a line of your own (FLAGS changed from the base).")
    parser.add_argument("--model_flags", default="", help="Flags appended to the base, e.g. "
                        "'--backbone=vgg16' (before each line's own flags).")
    parser.add_argument("--cores", default="0,1", help="The cores to pin lines to: one line "
                        "at a time on each.")
    parser.add_argument("--seed", type=int, default=0)
    _outputs.add_report_flags(parser, "camvid_ablation")
    args = parser.parse_args(argv)
    if not _outputs.camvid_found(args.data_dir, "--data_dir", needs=("train.txt", "val.txt")):
        return
    _outputs.refuse_to_overwrite(os.path.join(args.output_dir, args.name), args.overwrite)
    cpu = _outputs.cpu_line()
    print(f"CPU: {cpu}", flush=True)
    lines = dict(LINES)
    for item in args.custom:
        name, _, flags = item.partition(":")
        lines[name] = (flags.split(), flags)
    todo = [n for n in args.lines.split(",") if n]
    # lines that need the baseline's epochs or checkpoint go last
    todo.sort(key=lambda n: n == "tta" or "{E}" in " ".join(lines.get(n, ([], ""))[0]))
    unknown = [n for n in todo if n not in lines and n != "tta"]
    if unknown:
        parser.error(f"unknown --lines {unknown}; known: {sorted(lines) + ['tta']}")
    need_base = [n for n in todo if n == "tta" or "{E}" in " ".join(lines[n][0])]
    if (need_base and "base" not in todo
            and not os.path.exists(os.path.join(args.runs_dir, "base.result.json"))):
        parser.error(f"Line(s) {need_base} need the baseline's run: add 'base' to --lines, or "
                 f"finish it in --runs_dir={args.runs_dir!r} first.")
    results = {}
    free = [int(core) for core in args.cores.split(",")]
    with concurrent.futures.ThreadPoolExecutor(len(free)) as pool:
        futures = {}
        for name in todo:
            if not free:
                done = next(concurrent.futures.as_completed(futures))
                free.append(futures.pop(done))
                results[done.name] = done.result()
                print(f"done: {done.name}", flush=True)
            core = free.pop(0)
            job = (pool.submit(tta_line, args, core) if name == "tta"
                   else pool.submit(train_line, name, lines[name][0], args, core))
            job.name = name
            futures[job] = core
        for job in concurrent.futures.as_completed(futures):
            results[job.name] = job.result()
            print(f"done: {job.name}", flush=True)
    ordered = [results[n] for n in todo]
    markdown = report(ordered, args, cpu)
    print(markdown)
    _outputs.save_report(args.output_dir, args.name, markdown,
                         {"cpu": cpu, "cpu_minutes": args.cpu_minutes, "base": BASE,
                          "results": ordered})


if __name__ == "__main__":
    main()
