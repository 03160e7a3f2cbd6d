"""The training CLIs on bad input (CLI audit, findings 1, 3, 10, 13, 19, 20): `--overwrite`
empties only a run directory and never the data, negative counts are refused naming the flag,
a `--resume` with other model flags says which, `--help` lists the shared flags, and
`--synthetic` leaves nothing in the temporary folder and refuses the flags it would ignore.

Most checks call `prepare_run_dir`, `config_from_flags` and `run` in-process; the --help
checks run a script (about 10 s of TensorFlow import each: absl's --help needs the script as
the process's main module), the --synthetic refusal and finished-run checks run one in-process
(`tool_flags.run_in_process`)."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from tiny import file_digests, tiny_fcn
from keras_fcn import io
from keras_fcn import metrics as metrics_lib
from keras_fcn import training as train
from keras_fcn.datasets import nyud
from keras_fcn.training import config as config_lib
from keras_fcn.training import run_config
from keras_fcn.training import run_dir as run_dir_lib
from tool_flags import one_error_line, run_in_process, run_script, script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _user_data(folder):
    """A folder dataset with a note: what a user must never lose."""
    for split in ("train", "val"):
        for sub in ("images", "masks"):
            os.makedirs(folder / split / sub)
            (folder / split / sub / "a.png").write_bytes(b"\x89PNG user data " + sub.encode())
    (folder / "notes.txt").write_text("precious")
    return file_digests(folder)


def _run_dir(folder):
    """A run directory as training leaves it (staged, exported, with a killed run's temps)."""
    files = ["model.keras", "best.keras", "metrics.json", "curves.png", "labels.json",
             "history.json", "best_state.json", "class_weights.json", "config.json",
             "model_float16.tflite", "model_float16.json", ".best.keras.k2j4h5g6.keras",
             "backup/latest.weights.h5", "backup/training_metadata.json",
             "logs/train/events.out.tfevents.1.host", "fcn32s/model.keras",
             "fcn32s/backup/latest.weights.h5", "fcn8s/metrics.json",
             "fcn8s/model_float16.tflite", "fcn8s/.history.json.a1b2c3d4.json"]
    for name in files:
        os.makedirs(os.path.dirname(folder / name), exist_ok=True)
        (folder / name).write_bytes(b"x")


# ------------------------------------------------ finding 1: --overwrite ----


def test_overwrite_refuses_a_folder_that_is_not_a_run_directory(tmp_path):
    data = tmp_path / "userdata"
    _user_data(data)
    (data / "model.keras").write_bytes(b"a run file among the user's files")
    before = file_digests(data)
    with pytest.raises(ValueError) as error:
        train.prepare_run_dir(str(data), overwrite=True)
    message = str(error.value)
    assert str(data) in message and "'notes.txt'" in message and "'train/'" in message
    assert "Nothing was deleted" in message and "\n" not in message
    assert file_digests(data) == before  # every file is still there, unchanged
    assert not io.holds_lock(data) and not (data / io.LOCK_FILE).exists()


def test_overwrite_names_an_unexpected_file_in_a_stage_folder(tmp_path):
    run = tmp_path / "run"
    _run_dir(run)
    (run / "fcn8s" / "eval.json").write_text("mine")
    with pytest.raises(ValueError, match=r"holds other files: 'fcn8s/eval.json'\. Nothing"):
        train.prepare_run_dir(str(run), overwrite=True)
    assert (run / "fcn8s" / "eval.json").read_text() == "mine"
    assert (run / "model.keras").exists()


def test_overwrite_removes_evaluate_tools_evaluations_of_the_runs_models(tmp_path):
    """tools/evaluate.py's default output (runs/mine/best.eval.json) made the run folder "not
    a run": --overwrite refused it. Evaluations of the replaced models go with them; a file of
    that name that is not an evaluation, and any other JSON, are the user's: refused, kept."""
    run = tmp_path / "run"
    _run_dir(run)
    evaluation = {"mean_iu": 0.5, "confusion_matrix": [[1]], "model": "best.keras",
                  "dataset": "folder", "split": "val"}
    for name in ("best.eval.json", "model.eval.json", "fcn8s/model.eval.json"):
        (run / name).write_text(json.dumps(evaluation))
    (run / "fcn32s" / "best.eval.json").write_text("my notes")  # not an evaluation
    (run / "other.eval.json").write_text(json.dumps(evaluation))  # of no model of the run
    assert run_dir_lib.unexpected_entries(str(run)) == ["fcn32s/best.eval.json",
                                                        "other.eval.json"]
    with pytest.raises(ValueError, match=r"holds other files: 'fcn32s/best.eval.json', "
                                         r"'other.eval.json'\. Nothing was deleted"):
        train.prepare_run_dir(str(run), overwrite=True)
    assert (run / "best.eval.json").exists() and (run / "model.keras").exists()
    os.remove(run / "fcn32s" / "best.eval.json")
    os.remove(run / "other.eval.json")
    assert train.prepare_run_dir(str(run), overwrite=True) == str(run)
    assert os.listdir(run) == [io.LOCK_FILE]
    io.unlock_directory(run)


def test_overwrite_empties_a_run_directory(tmp_path):
    run = tmp_path / "run"
    _run_dir(run)
    assert run_dir_lib.unexpected_entries(str(run)) == []
    assert train.prepare_run_dir(str(run), overwrite=True) == str(run)
    assert os.listdir(run) == [io.LOCK_FILE]  # held by this process until unlocked
    io.unlock_directory(run)


@pytest.mark.parametrize("where", ["same", "parent"])
def test_the_run_directory_may_not_be_or_contain_the_data(tmp_path, where):
    data = tmp_path / "userdata"
    before = _user_data(data)
    output = data if where == "same" else tmp_path
    for overwrite, resume in ((True, False), (False, True), (False, False)):
        with pytest.raises(ValueError, match=r"^--output_dir must not be or contain --data_dir: .*"
                           rf"output_dir='{output}', data_dir='{data}'"):
            train.prepare_run_dir(str(output), overwrite=overwrite, resume=resume,
                                  inputs={"data_dir": str(data), "val_data_dir": None})
    assert file_digests(data) == before
    # A run folder inside the data folder is allowed: it holds no data.
    train.prepare_run_dir(str(data / "runs" / "a"), inputs={"data_dir": str(data)})
    io.unlock_directory(data / "runs" / "a")


def test_train_run_with_output_dir_equal_to_data_dir_deletes_nothing(tmp_path):
    """The audit's command (`--dataset=folder --data_dir=D --output_dir=D --overwrite`), which
    emptied D: refused before any data is read."""
    data = tmp_path / "userdata2"
    before = _user_data(data)
    config = train.TrainConfig().replace(
        dataset="folder", num_classes=4, data_dir=str(data), output_dir=str(data),
        overwrite=True, epochs=1, widths=(4, 4, 8, 8, 8), fc_units=8, weights="none")
    with pytest.raises(ValueError, match="--output_dir must not be or contain --data_dir"):
        train.run(config)
    assert file_digests(data) == before
    weights = tmp_path / "w.keras"
    weights.write_bytes(b"checkpoint")  # a weights file in the output folder is an input too
    with pytest.raises(ValueError, match="must not be or contain --weights"):
        train.run(train.TrainConfig().replace(output_dir=str(tmp_path), overwrite=True,
                                              weights=str(weights)))
    assert weights.read_bytes() == b"checkpoint"


def test_resume_and_overwrite_together_are_refused(tmp_path):
    run = tmp_path / "run"
    _run_dir(run)
    with pytest.raises(ValueError, match="give one of them. Received: resume=True, "
                       "overwrite=True"):
        train.prepare_run_dir(str(run), resume=True, overwrite=True)
    assert (run / "model.keras").exists() and not (run / io.LOCK_FILE).exists()


# ---------------------------------------- findings 3 and 10: numbers ----


def _config(*argv):
    values = flags.FlagValues()
    train.define_flags(values)
    values(["prog", *argv])
    return train.config_from_flags(values)


@pytest.mark.parametrize("flag, value, minimum", [
    ("steps_per_epoch", -2, 0), ("validation_steps", -1, 0), ("epochs", -1, 0),
    ("shapes_size", 0, 1), ("num_train", 0, 1), ("num_val", 0, 1), ("batch_size", 0, 1),
    ("val_batch_size", -1, 1),
])
def test_a_count_below_its_minimum_is_refused_naming_the_flag(flag, value, minimum):
    with pytest.raises(ValueError, match=rf"^--{flag} must be an integer >= {minimum} .*"
                       rf"Received: {flag}={value}$"):
        _config(f"--{flag}={value}")
    with pytest.raises(ValueError, match=rf"^--{flag} must be an integer >= {minimum}"):
        train.run(train.TrainConfig().replace(**{flag: value}))  # the Python API too


def test_zero_epochs_and_zero_steps_are_legitimate():
    config = _config("--epochs=0", "--steps_per_epoch=0", "--validation_steps=0")
    assert config.optim.epochs == 0  # trains nothing: evaluates the initial weights
    assert config.optim.steps_per_epoch is None and config.run.validation_steps is None
    api = config_lib.check_numbers(train.TrainConfig().replace(steps_per_epoch=0))
    assert api.optim.steps_per_epoch is None  # 0 is unset in Python as on the command line
    with pytest.raises(ValueError, match=r"--epochs must be an integer >= 0 \(0: no training"
                       r".*Received: epochs=1.5"):
        config_lib.check_numbers(train.TrainConfig().replace(epochs=1.5))


# ------------------------------------- finding 13: --resume, other flags ----


def test_resume_with_other_model_flags_names_them_before_loading_weights(tmp_path):
    run = tmp_path / "run_kill"
    first = train.TrainConfig().replace(widths=(4, 4, 8, 8, 8), fc_units=8, output_dir=str(run))
    run.mkdir()
    run_config.write_run_config(str(run), first.flat())
    (run / "backup").mkdir()
    (run / "backup" / "latest.weights.h5").write_bytes(b"not even weights")
    changed = first.replace(widths=(8, 8, 8, 8, 8), resume=True)
    with pytest.raises(ValueError) as error:
        train.run(changed)
    message = str(error.value)
    assert message == (
        f"The run in '{run}' was trained with --widths=4,4,8,8,8; --resume got "
        "--widths=8,8,8,8,8. Resume with the run's flags, or start a new run (another "
        "--output_dir).")
    assert (run / "backup" / "latest.weights.h5").read_bytes() == b"not even weights"
    # Other flags may change on a resume (epochs, learning rate); config.json is updated.
    path = run_config.write_run_config(str(run), first.replace(epochs=30).flat(), resume=True,
                                        compare=train.recipe.RESUME_FLAGS)
    assert json.load(open(path))["flags"]["epochs"] == 30
    # A run begun before config.json is not checked, and gets none: its flags are unknown (a
    # wrong resume must not store its flags as the run's).
    os.remove(path)
    assert run_config.write_run_config(str(run), changed.flat(), resume=True,
                                        compare=train.recipe.RESUME_FLAGS) is None
    assert not os.path.exists(path)


def test_a_backup_that_does_not_fit_the_model_is_told_in_one_line(tmp_path):
    """A run without config.json (or a flag it does not compare): Keras' error listed every
    weight array of the layer (20+ lines)."""
    import numpy as np
    from tiny import tiny_fcn

    import tensorflow as tf

    from keras_fcn.datasets import shapes as synthetic

    run = tmp_path / "run"
    (run / "backup").mkdir(parents=True)
    tiny_fcn("32s", 4, widths=(4, 4, 8, 8, 8)).save_weights(str(run / "backup" /
                                                              "latest.weights.h5"))
    (run / "backup" / "training_metadata.json").write_text('{"epoch": 0, "batch": -1}')
    model = tiny_fcn("32s", 4, widths=(8, 8, 8, 8, 8))
    train.compile_model(model, num_classes=4, ignore_label=255,
                        optimizer=train.make_optimizer("adam", 1e-3))
    images, masks = synthetic.shapes_arrays(2, size=32, seed=0)
    data = tf.data.Dataset.from_tensor_slices((images.astype(np.float32),
                                               masks.astype(np.int32))).batch(2)
    with pytest.raises(ValueError) as error:
        train.fit(model, data, None, run_dir=str(run), epochs=1, info=synthetic.SHAPES_INFO,
                  verbose=0)
    assert str(error.value).startswith(
        f"The backup of the run in '{run}' does not fit this model (conv1_1: the model has "
        "shape (3, 3, 3, 8), the backup (3, 3, 3, 4)): were the model flags")
    assert "\n" not in str(error.value)
    assert (run / "backup" / "latest.weights.h5").exists()  # kept for the right resume


def test_a_resume_that_changes_several_flags_names_each_in_one_line(tmp_path):
    stored = {"model": "fcn8s", "backbone": "vgg16", "widths": [4, 4, 8, 8, 8], "fc_units": 8}
    run_config.write_run_config(str(tmp_path), stored)
    given = dict(stored, model="fcn32s", fc_units=None)
    with pytest.raises(ValueError, match=r"^The run in '.*' was trained with --model=fcn8s, "
                       r"--fc_units=8; --resume got --model=fcn32s, --fc_units= \(unset\)\. "
                       r"Resume"):
        run_config.write_run_config(str(tmp_path), given, resume=True,
                                     compare=("model", "backbone", "widths", "fc_units"))


# ------------------------------------------- the scripts (subprocesses) ----


def _script(script, *args, env=None):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", script), *args], capture_output=True,
        text=True, timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
             **(env or {})})


@pytest.mark.parametrize("script", ["train.py", "train_nyud.py"])
def test_help_lists_the_shared_training_flags(script):
    """Finding 19: `--help` showed no flag of keras_fcn.training (train.py: none at all)."""
    proc = _script(script, "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for flag in ("--epochs", "--steps_per_epoch", "--batch_size", "--output_dir",
                 "--[no]resume", "--[no]overwrite"):
        assert f"\n  {flag}:" in proc.stdout, (flag, proc.stdout[-3000:])
    if script == "train.py":
        assert "\n  --widths:" in proc.stdout and "\n  --dataset:" in proc.stdout


def test_nyud_synthetic_refuses_the_flags_it_would_ignore(tmp_path):
    """Finding 20: --synthetic used fake files and silently ignored --data_dir and the weights."""
    data = tmp_path / "nyud"
    data.mkdir()
    # in this process, as the script runs (test_resume_of_a_finished_run_trains_nothing: a
    # subprocess)
    proc = run_in_process("examples/train_nyud.py", "--synthetic", f"--data_dir={data}",
                          "--weights_rgb=rgb.keras", f"--output_dir={tmp_path / 'run'}")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert errors == [
        "error: --synthetic trains a tiny random model on fake files: it does not use "
        f"--data_dir, --weights_rgb. Leave them out, or leave out --synthetic. Received: "
        f"data_dir='{data}', weights_rgb='rgb.keras'"], proc.stderr[-2000:]
    assert not (tmp_path / "run").exists()


# ---------------------------- a finished run, resumed with other --epochs ----


def test_a_finished_run_is_not_reused_for_other_epochs(tmp_path):
    """`--resume` of a run that finished after 2 epochs with `--epochs 5` printed "nothing to
    resume" and kept the 2-epoch model: now an error that says how to train further."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"the finished model")
    io.write_json(str(run / "metrics.json"), {"status": "completed", "epochs": 2})
    assert run_dir_lib.finished_run(str(run), 2)["epochs"] == 2
    assert run_dir_lib.finished_run(str(tmp_path / "none"), 5) is None
    config = train.TrainConfig().replace(epochs=5, resume=True, output_dir=str(run))
    with pytest.raises(ValueError) as error:
        train.train_one(config, "32s", run_dir=str(run), data=(None,) * 4, strategy=None,
                        weights=None, learning_rate=1e-3, class_weights=None, pixels=64)
    assert str(error.value) == (
        f"The run in '{run}' is complete after 2 epochs; a finished run is not trained further "
        "(its learning-rate schedule ran to its end). Received: epochs=5. Start a new run from "
        f"its weights (--weights {run / 'model.keras'} and another --output_dir), or train it "
        "again with --overwrite.")
    assert (run / "model.keras").read_bytes() == b"the finished model"
    # A staged run's finished stage is checked the same way (it is reused without --resume).
    (run / "fcn32s").mkdir()
    os.replace(run / "model.keras", run / "fcn32s" / "model.keras")
    os.replace(run / "metrics.json", run / "fcn32s" / "metrics.json")
    with pytest.raises(ValueError, match="is complete after 2 epochs.*epochs=5"):
        train.train_staged(config, run_dir=str(run), data=(None,) * 4, strategy=None,
                           class_weights=None, pixels=64 * 64, stages=("32s",))


# Review of audit 5: the examples refuse a --resume with another --optimizer (NYUDv2: or
# --eval_split), as the recipe's RESUME_FLAGS do.


@pytest.mark.parametrize("path, stored", [
    ("examples/train_nyud.py", {"modality": "rgb", "variant": "32s", "synthetic": True,
                                "eval_split": "test", "optimizer": "sgd"}),
    ("examples/train_siftflow.py", {"variant": "16s", "synthetic": True, "optimizer": "sgd"})])
def test_example_resume_with_another_optimizer_is_refused_naming_it(tmp_path, path, stored):
    """The examples refused only model flags: --optimizer (and NYUDv2's --eval_split, the
    validation images of best.keras) could change on --resume, as in the recipe they cannot."""
    run_config.write_run_config(str(tmp_path), stored)
    with script(path, "review_" + os.path.basename(path)[:-3]) as module:
        with pytest.raises(ValueError) as error:
            run_config.write_run_config(str(tmp_path), {**stored, "optimizer": "adam"},
                                         resume=True, compare=module.RESUME_FLAGS)
    assert str(error.value) == (
        f"The run in '{tmp_path}' was trained with --optimizer=sgd; --resume got "
        "--optimizer=adam. Resume with the run's flags, or start a new run (another "
        "--output_dir).")


# Review 7: a missing data folder is named before the ImageNet weights are fetched.


@pytest.mark.slow
@pytest.mark.parametrize("script, expected", [
    ("examples/train_nyud.py", "error: NYUDv2 folder not found: '{missing}' (--data_dir; "
     "--convert_mat makes one, --synthetic needs none)"),
    ("examples/train_siftflow.py", "error: SIFT Flow image folder not found: "
     "'{missing}/Images/spatial_envelope_256x256_static_8outdoorcategories'"),
])
def test_examples_name_a_missing_data_folder_first(tmp_path, script, expected):
    # Before: the ImageNet weights were fetched first (offline: a download error) and the run
    # folder was left behind, so the next try said it exists.
    missing, run_dir = tmp_path / "nope", tmp_path / "run"
    line = one_error_line(run_script(script, f"--data_dir={missing}", f"--output_dir={run_dir}"))
    assert line == expected.format(missing=missing)
    assert not run_dir.exists()


# Audit round 5 leftovers: examples/train_nyud.py --convert_mat takes --overwrite_data for split
# files that list other ids.


def _train_nyud(*argv):
    """examples/train_nyud.py as a module, its flags parsed from `argv`, removed afterwards."""
    return script(os.path.join("examples", "train_nyud.py"), "leftovers_train_nyud", *argv)


def test_convert_mat_refuses_other_split_files_naming_the_flag(tmp_path, labeled_mat):
    mat, mapping = labeled_mat
    out = tmp_path / "nyud"
    out.mkdir()
    (out / "train.txt").write_text("5001\n5002\n")
    (out / "notes.txt").write_text("mine")
    argv = (f"--convert_mat={mat}", f"--class_mapping={mapping}", f"--data_dir={out}",
            f"--output_dir={tmp_path / 'run'}")
    with _train_nyud(*argv) as module:
        with pytest.raises(FileExistsError) as info:
            module.main(["train_nyud.py"])
    train = out / "train.txt"
    assert str(info.value) == (
        f"NYUDv2 split file(s) already exist with other ids: '{train}' (2 ids, would be 381). "
        "Pass overwrite=True to replace them, or remove them. On the command line: "
        "--overwrite_data replaces them.")
    assert sorted(os.listdir(out)) == ["notes.txt", "train.txt"]  # refused before converting
    assert train.read_text() == "5001\n5002\n"


def test_convert_mat_overwrite_data_replaces_only_what_it_writes(tmp_path, labeled_mat):
    mat, mapping = labeled_mat
    out = tmp_path / "nyud"
    (out / "segmentation").mkdir(parents=True)
    (out / "train.txt").write_text("5001\n5002\n")
    (out / "notes.txt").write_text("mine")
    (out / "segmentation" / "readme.md").write_text("keep")
    with _train_nyud(f"--convert_mat={mat}", f"--class_mapping={mapping}",
                     f"--data_dir={out}", "--overwrite_data") as module:
        assert module.convert_mat(str(out)) == 4
    ids = [str(5001 + i) for i in range(4)]
    for name in ("train", "val", "test"):  # the bundled split, as for the real 1,449 images
        assert nyud.nyud_ids(str(out), name) == nyud.nyud_split_ids(name)
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "segmentation" / "readme.md").read_text() == "keep"
    assert sorted(os.listdir(out / "segmentation")) == [f"img_{i}.mat" for i in ids] + [
        "readme.md"]


def test_overwrite_data_without_convert_mat_is_refused(tmp_path):
    with _train_nyud(f"--data_dir={tmp_path}", "--overwrite_data",
                     f"--output_dir={tmp_path / 'run'}") as module:
        with pytest.raises(ValueError, match=re.escape(
                "--overwrite_data replaces the files that --convert_mat writes: give "
                "it with --convert_mat. Received: overwrite_data=True, convert_mat=None")):
            module.main(["train_nyud.py"])
    assert not (tmp_path / "run").exists()


# Reliability audit round 5 (docs/reliability.md, "Round 5: training"): each test failed on the
# code before its fix. Tiny models on 32x32 shapes, one step per epoch.


@pytest.mark.parametrize("script", ["train_siftflow.py", "train_nyud.py"])
def test_resume_of_a_finished_run_trains_nothing(tmp_path, script):
    """examples/train_siftflow.py --resume of a finished run trained it again from epoch 1
    (new model.keras and history, the old best.keras kept: two runs mixed), exit 0;
    train_nyud.py was then refused by fit (exit 2) instead of saying it is complete."""
    run = tmp_path / "run"
    run.mkdir()
    tiny_fcn("32s", 4).save(str(run / "model.keras"))
    scores = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in
              metrics_lib.segmentation_metrics(np.array([[3, 1], [0, 4]])).items()}
    final = {"semantic": {"mean_iu": 0.25}} if script == "train_siftflow.py" else scores
    io.write_json(str(run / "metrics.json"), {"status": "completed", "epochs": 2,
                                              "final_val": final})
    config = ({"variant": "16s", "synthetic": True} if script == "train_siftflow.py" else
              {"modality": "rgb", "variant": "32s", "synthetic": True})
    run_config.write_run_config(str(run), config)
    before = file_digests(run)
    # in this process, as the script runs it (a subprocess cost ~10 s of TensorFlow import)
    proc = run_in_process(f"examples/{script}", "--synthetic", "--resume", f"--output_dir={run}")
    io.unlock_directory(str(run))  # as the script's process does at its exit
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Run directory: {run} (complete; nothing to resume)" in proc.stdout
    after = file_digests(run)
    assert {k: after[k] for k in ("model.keras", "metrics.json")} == {
        k: before[k] for k in ("model.keras", "metrics.json")}
    assert sorted(after) == sorted(before)  # no history, best.keras or backup: nothing trained
