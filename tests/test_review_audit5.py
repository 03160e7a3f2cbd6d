"""Review of the session's changes (audit 5): what the review fixed.

1. ``nyud.convert_labeled_mat`` counts the HHA files it keeps in its "kept N files" log line
   (it skipped their computation, so ``write_example`` never saw them).
2. ``examples/train_nyud.py`` and ``train_siftflow.py`` refuse a --resume with another
   --optimizer (NYUDv2: or --eval_split), as the recipe's RESUME_FLAGS do since 6ccc5e8.
"""

import logging
import os

import pytest

from keras_fcn.datasets import nyud
from keras_fcn.training import run_dir as run_dir_lib
from tool_flags import script


def test_convert_labeled_mat_counts_every_kept_file(tmp_path, caplog):
    mat, mapping = str(tmp_path / "labeled.mat"), str(tmp_path / "mapping.mat")
    nyud.write_fake_labeled_mat(mat, num_images=2, height=16, width=20)
    nyud.write_fake_class_mapping(mapping)
    out = str(tmp_path / "out")
    nyud.convert_labeled_mat(mat, mapping, out, indices=[0, 1], verbose=False)
    with caplog.at_level(logging.INFO, logger="keras_fcn"):
        nyud.convert_labeled_mat(mat, mapping, out, indices=[0, 1], verbose=False)
    kept = [r.getMessage() for r in caplog.records if "kept" in r.getMessage()]
    # 2 images x (rgb, depth, hha, label)
    assert kept == [f"NYUDv2: kept 8 files of {out} that existed already (overwrite=True "
                    "replaces them)"]


@pytest.mark.parametrize("path, stored", [
    ("examples/train_nyud.py", {"modality": "rgb", "variant": "32s", "synthetic": True,
                                "eval_split": "test", "optimizer": "sgd"}),
    ("examples/train_siftflow.py", {"variant": "16s", "synthetic": True, "optimizer": "sgd"})])
def test_example_resume_with_another_optimizer_is_refused_naming_it(tmp_path, path, stored):
    """The examples refused only model flags: --optimizer (and NYUDv2's --eval_split, the
    validation images of best.keras) could change on --resume, as in the recipe they cannot."""
    run_dir_lib.write_run_config(str(tmp_path), stored)
    with script(path, "review_" + os.path.basename(path)[:-3]) as module:
        with pytest.raises(ValueError) as error:
            run_dir_lib.write_run_config(str(tmp_path), {**stored, "optimizer": "adam"},
                                         resume=True, compare=module.RESUME_FLAGS)
    assert str(error.value) == (
        f"The run in '{tmp_path}' was trained with --optimizer=sgd; --resume got "
        "--optimizer=adam. Resume with the run's flags, or start a new run (another "
        "--output_dir).")
