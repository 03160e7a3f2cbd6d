"""The one "CamVid not found" check of the benchmarks (benchmarks/_outputs.py)."""

import importlib.util
import os

import pytest

_PATH = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "_outputs.py")
_SPEC = importlib.util.spec_from_file_location("benchmarks_outputs", _PATH)
_outputs = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_outputs)


def _touch(folder, *names):
    for name in names:
        (folder / name).write_text("train/a.png trainannot/a.png\n")


def test_found_with_the_files_prints_nothing(tmp_path, capsys):
    _touch(tmp_path, "train.txt", "val.txt")
    assert _outputs.camvid_found(str(tmp_path), "--data_dir") is True
    assert _outputs.camvid_found(str(tmp_path), "--camvid", needs=("val.txt",)) is True
    assert _outputs.camvid_found(str(tmp_path), "--camvid", needs=("train.txt", "val.txt"))
    assert capsys.readouterr().out == ""
    assert _outputs.camvid_missing(str(tmp_path), "--camvid") is None


def test_missing_folder_prints_one_message(tmp_path, capsys):
    path = str(tmp_path / "nope")
    assert _outputs.camvid_found(path, "--data_dir") is False
    out = capsys.readouterr().out
    assert out == f"CamVid not found in {path!r} (no train.txt; pass --data_dir): skipped.\n"


@pytest.mark.parametrize("present, needs, missing", [
    ((), ("train.txt", "val.txt"), "train.txt or val.txt"),
    (("train.txt",), ("train.txt", "val.txt"), "val.txt"),
    (("val.txt",), ("train.txt", "val.txt"), "train.txt"),
    (("val.txt",), ("train.txt",), "train.txt"),
    (("train.txt",), ("val.txt",), "val.txt"),
])
def test_missing_files_are_named(tmp_path, capsys, present, needs, missing):
    _touch(tmp_path, *present)
    flag = "--camvid or set $KERAS_FCN_CAMVID"
    assert _outputs.camvid_found(str(tmp_path), flag, needs) is False
    message = (f"CamVid not found in {str(tmp_path)!r} (no {missing}; pass --camvid or set "
               "$KERAS_FCN_CAMVID): skipped.")
    assert capsys.readouterr().out == message + "\n"
    # the same text for a benchmark that records the skip (benchmarks/predict.py)
    assert _outputs.camvid_missing(str(tmp_path), flag, needs) == message


def test_relative_path_is_shown_absolute(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _outputs.camvid_found("camvid", "--data_dir") is False
    assert repr(str(tmp_path / "camvid")) in capsys.readouterr().out


def test_a_folder_named_like_a_list_file_is_not_the_file(tmp_path, capsys):
    (tmp_path / "train.txt").mkdir()
    assert _outputs.camvid_found(str(tmp_path), "--data_dir") is False
    assert "(no train.txt; pass --data_dir)" in capsys.readouterr().out


def _fresh_outputs():
    spec = importlib.util.spec_from_file_location("benchmarks_outputs_fresh", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_default_camvid_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_FCN_CAMVID", str(tmp_path))
    assert _fresh_outputs().CAMVID_DIR == str(tmp_path)
    monkeypatch.delenv("KERAS_FCN_CAMVID")
    beside = os.path.join(os.path.dirname(os.path.abspath(_PATH)), "..", "..", "shared", "data",
                          "camvid")
    assert os.path.normpath(_fresh_outputs().CAMVID_DIR) == os.path.normpath(beside)
