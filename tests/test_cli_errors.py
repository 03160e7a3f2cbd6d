"""How every script reports a user's mistake: one line on stderr, exit status 2, no traceback,
whatever raised it (a flag, a stray word, the data pipeline, the disk, a download)."""

import errno
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_fcn import io
from keras_fcn.data.decode import make_decode_fn
from keras_fcn.datasets.loader import load_split
from keras_fcn.training.cli import error_message, run_main


def _run(main, argv, capsys, **kwargs):
    """Runs `run_main` in this process; returns (exit status, stderr)."""
    with pytest.raises(SystemExit) as exit_:
        run_main(main, argv=["prog", *argv], **kwargs)
    return exit_.value.code, capsys.readouterr().err


def _raising(error):
    def main(argv):
        raise error
    return main


@pytest.mark.parametrize("error, message", [
    (PermissionError(errno.EACCES, "Permission denied", "/ro/run"),
     "[Errno 13] Permission denied: '/ro/run'"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/tmp"), "[Errno 21] Is a directory"),
    (io.DownloadError("cannot download http://x (offline?)"), "cannot download http://x"),
    (ValueError("--epochs must be >= 0. Received: -1"), "--epochs must be >= 0. Received: -1"),
])
def test_user_errors_print_one_line_and_exit_2(capsys, error, message):
    status, err = _run(_raising(error), [], capsys)
    assert status == 2 and err.startswith("error: ") and message in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_a_bug_is_not_dressed_as_a_user_error(capsys):
    with pytest.raises(KeyError):
        run_main(_raising(KeyError("internal")), argv=["prog"])


def test_bad_flags_and_stray_words_exit_2_and_help_exits_0(capsys):
    status, err = _run(lambda argv: 0, ["--no_such_flag=1"], capsys)
    assert status == 2 and "no_such_flag" in err and "--helpfull" in err
    # absl reads `--flag false` as --flag plus the word "false": refused, not flag=True.
    status, err = _run(lambda argv: 0, ["false"], capsys)
    assert status == 2 and "unexpected arguments: ['false']" in err and "--name=false" in err
    seen = []
    status, _ = _run(lambda argv: seen.append(argv[1:]), ["a.png", "b.png"], capsys,
                     positional=True)
    assert status in (0, None) and seen == [["a.png", "b.png"]]
    status, _ = _run(lambda argv: 0, ["--help"], capsys)
    assert status == 0


def _pairs_dataset(tmp_path, image_bytes=None, mask=None, image_size=(4, 4)):
    image, mask_path = tmp_path / "a.png", tmp_path / "a_mask.png"
    if image_bytes is None:
        Image.fromarray(np.zeros((*image_size, 3), np.uint8)).save(image)
    else:
        image.write_bytes(image_bytes)
    Image.fromarray(np.zeros((4, 4), np.uint8) if mask is None else mask).save(mask_path)
    pairs = tf.data.Dataset.from_tensor_slices(([str(image)], [str(mask_path)]))
    return pairs.map(make_decode_fn(num_classes=3)), str(image), str(mask_path)


@pytest.mark.parametrize("case", ["corrupt image", "class id", "sizes"])
def test_data_pipeline_checks_reach_the_user_as_their_own_message(tmp_path, capsys, case):
    if case == "corrupt image":
        ds, image, _ = _pairs_dataset(tmp_path, image_bytes=b"not an image at all")
        expected = f"image '{image}' is not a JPEG, PNG, GIF, BMP, WebP or JPEG XL file"
    elif case == "class id":
        ds, _, mask = _pairs_dataset(tmp_path, mask=np.full((4, 4), 7, np.uint8))
        expected = f"mask '{mask}' has value 7"
    else:
        ds, image, mask = _pairs_dataset(tmp_path, image_size=(4, 6))
        expected = f"image '{image}' is 4x6 (HxW) but mask '{mask}' is 4x4"
    with pytest.raises(tf.errors.OpError) as raised:
        list(ds)
    assert error_message(raised.value).startswith(expected)
    status, err = _run(lambda argv: list(ds), [], capsys)
    assert status == 2 and err.startswith(f"error: {expected}") and "Traceback" not in err
    assert "node" not in err and "{{" not in err


def test_an_empty_split_and_empty_shapes_are_named(tmp_path):
    for sub in ("images", "masks"):
        (tmp_path / "val" / sub).mkdir(parents=True)
    with pytest.raises(ValueError, match=r"'val' split of --dataset=folder has no image/mask "
                                         r"pairs"):
        load_split("folder", "val", data_dir=str(tmp_path), num_classes=3)
    with pytest.raises(ValueError, match="`shapes_size` must be a positive integer. Received: "
                                         "shapes_size=0"):
        load_split("shapes", "val", shapes_size=0)
    with pytest.raises(ValueError, match="shapes_count=0"):
        load_split("shapes", "train", shapes_count=0)


def test_a_failed_assertion_inside_fit_is_told_by_its_message(capsys):
    """A label check that fails inside the traced train step (a tf.debugging.Assert) reached
    the user as "error: Graph execution error:" and nothing else."""
    from tiny import tiny_fcn
    from keras_fcn import training as train

    model = tiny_fcn("32s", 4)
    train.compile_model(model, num_classes=4, ignore_label=255, optimizer="sgd")
    labels = np.full((2, 32, 32), 7, "int32")
    data = tf.data.Dataset.from_tensor_slices((np.zeros((2, 32, 32, 3), "float32"), labels))
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        model.fit(data.batch(2), epochs=1, verbose=0)
    assert str(raised.value).startswith("Graph execution error:")
    assert error_message(raised.value) == (
        "Labels must be in [0, 4) or equal to ignore_label=255. Received a label value: 7")
    assert _run(_raising(raised.value), [], capsys) == (
        2, "error: Labels must be in [0, 4) or equal to ignore_label=255. Received a label "
           "value: 7\n")


def _main_block_calls(path):
    """The calls in the ``if __name__ == "__main__":`` block of the script at ``path``."""
    import ast

    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    blocks = [node for node in tree.body if isinstance(node, ast.If)
              and ast.unparse(node.test).replace("'", '"') == '__name__ == "__main__"']
    assert len(blocks) == 1, f"{path}: {len(blocks)} __main__ blocks"
    return [node for node in ast.walk(blocks[0]) if isinstance(node, ast.Call)]


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# examples/litert_segment.py needs no keras_fcn (a phone-side app): its own exit statuses
_SCRIPTS = sorted(os.path.relpath(path, _ROOT)
                  for folder in ("tools", "examples")
                  for path in glob.glob(os.path.join(_ROOT, folder, "*.py"))
                  if not path.endswith("litert_segment.py"))


@pytest.mark.parametrize("path", _SCRIPTS)
def test_each_script_runs_its_main_through_run_main(path):
    """The scripts' exit statuses are checked in-process (tests/tool_flags.run_in_process calls
    ``run_main(module.main)``, as these blocks do): here that each script's ``__main__`` block
    does, so the status of a real process is the one those tests see."""
    calls = [call for call in _main_block_calls(os.path.join(_ROOT, path))
             if _ast_name(call.func) == "run_main"]
    assert len(calls) == 1, f"{path}: its __main__ block does not call run_main(main)"
    call = calls[0]
    assert [_ast_name(arg) for arg in call.args] == ["main"], path
    positional = {k.arg: getattr(k.value, "value", None) for k in call.keywords}
    assert positional == ({"positional": True} if path == "tools/predict.py" else {}), path


def _ast_name(node):
    """``run_main`` for ``run_main``, ``cli.run_main`` and ``train.run_main``; else None."""
    return getattr(node, "id", None) or getattr(node, "attr", None)
