"""A run's flags in its `config.json`: written when the run starts, and compared when it is
resumed (`write_run_config`).

A `--resume` may change three kinds of flag differently:

- the flags that must not change (a recipe's `RESUME_FLAGS`: the model's shape, the training
  and validation images, the optimizer): refused, naming both values;
- the flags that plan the learning-rate schedule (`SCHEDULE_FLAGS`): allowed, and each change
  is printed, saying the schedule is planned anew;
- any other flag that changes training (the loss, the augmentation, dropout, the seed, ...):
  allowed, printed with both values, and recorded in `config.json`'s `resume_changes`, so
  the run's record does not claim the new value for the epochs before the resume;
- the flags of `QUIET_FLAGS` (where outputs go, logging, caching, how the work is run): not
  compared.

Example:
    write_run_config("runs/a", {"widths": (8, 8)}, resume=True, compare=("widths",))
"""

import os

from keras_fcn import io
from keras_fcn.training.run_dir import CONFIG_FILE, completed_run

# Flags a resume may change without a word: they choose where outputs go, how much is logged
# or cached, and how the same computation is run, not what is trained.
QUIET_FLAGS = ("output_dir", "run_dir", "resume", "overwrite", "verbose", "tensorboard",
               "weights", "cache", "export", "budget_clock", "max_minutes_per_stage",
               "strategy", "jit_compile", "conv_matmul", "val_batch_size")


def flag_text(value):
    """A stored flag value as the command line writes it (tuples as "a,b"; unset as "")."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(flag_text(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def flag_words(name, value):
    """'--name=value', or '--name= (unset)' for an unset flag."""
    text = flag_text(value)
    return f"--{name}={text}" if text != "" else f"--{name}= (unset)"


def write_run_config(run_dir, flags, *, resume=False, compare=(), replan=(),
                     quiet=QUIET_FLAGS):
    """Writes the run's flags to `run_dir/config.json`; on `resume`, first compares them with
    the stored ones (see the module's docstring).

    Args:
        run_dir: the run directory (from `prepare_run_dir`).
        flags: {flag name: value} of the run (JSON values; tuples are stored as lists).
        resume: whether the run continues one in `run_dir`.
        compare: the flag names that a resumed run must not change. A run directory without
            `config.json` (begun before it existed) is not checked, and none is written there
            (its flags are unknown; `fit.backup_mismatch` names a backup that does not fit).
        replan: the flags that plan the learning-rate schedule: a resumed run may change
            them; each change is printed with both values, saying the schedule is planned
            anew (under poly or cosine its rate jumps at the resumed step).
        quiet: the flags whose changes are neither printed nor recorded. Every other flag's
            change is printed and appended to `config.json`'s `resume_changes` list
            (``{"flag", "was", "now"}``; schedule changes too).

    Returns:
        The path of `config.json`, or None where none was written.

    Raises:
        ValueError: a resumed run changes one of `compare`; the message names each flag with
            the stored and the given value, before any weights are loaded.

    Example:
        write_run_config("runs/a", {"widths": (8, 8)}, resume=True, compare=("widths",))
    """
    path = os.path.join(run_dir, CONFIG_FILE)
    flags = io.jsonable(dict(flags))
    record = {"flags": flags}
    if resume and not os.path.exists(path) and any(
            name != io.LOCK_FILE for name in os.listdir(run_dir)):
        return None  # a run begun before config.json: its flags are unknown, none are stored
    if resume and os.path.exists(path):
        stored_record = io.read_json(path, "Run config")
        stored_record = stored_record if isinstance(stored_record, dict) else {}
        stored = stored_record.get("flags", {})
        stored = stored if isinstance(stored, dict) else {}
        changed = [name for name in flags
                   if name in stored and flag_text(stored[name]) != flag_text(flags[name])]
        refused = [name for name in compare if name in stored
                   and flag_text(stored[name]) != flag_text(flags.get(name))]
        if refused:
            was = ", ".join(flag_words(name, stored[name]) for name in refused)
            now = ", ".join(flag_words(name, flags.get(name)) for name in refused)
            raise ValueError(
                f"The run in '{run_dir}' was trained with {was}; --resume got {now}. Resume "
                "with the run's flags, or start a new run (another --output_dir).")
        history = list(stored_record.get("resume_changes") or [])
        if not completed_run(run_dir):  # a finished run is not trained on: nothing changes
            for name in changed:
                if name in quiet:
                    continue
                was, now = flag_text(stored[name]), flag_text(flags[name])
                if name in replan:
                    print(f"--resume changes --{name}={was} to {now}: the learning-rate "
                          "schedule is planned anew from the resumed step (under poly or "
                          "cosine its rate jumps there).", flush=True)
                else:
                    print(f"--resume changes --{name}={was} to {now}: the epochs from here on "
                          f"train with it ({CONFIG_FILE} records the change under "
                          "resume_changes).", flush=True)
                history.append({"flag": name, "was": stored[name], "now": flags[name]})
        if history:
            record["resume_changes"] = history
    io.write_json(path, record)
    return path
