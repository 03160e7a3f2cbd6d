"""One spelling per folder flag across the benchmarks (benchmarks/_outputs.py): --output_dir
for the report, --runs_dir for the training runs; the older --results_dir, --out_dir and the
absl --output prefix still work and are not shown in --help."""

import argparse
import glob
import importlib.util
import os
import re
import subprocess
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "benchmarks")
_SPEC = importlib.util.spec_from_file_location(
    "benchmarks_outputs", os.path.join(BENCHMARKS, "_outputs.py"))
_outputs = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_outputs)
LEAD_SCRIPTS = ("gpu.py", "torch_fcn.py")  # not covered by this convention


def _parser():
    parser = argparse.ArgumentParser(prog="bench")
    _outputs.add_output_dir(parser, "reports")
    _outputs.add_runs_dir(parser, "runs")
    return parser


@pytest.mark.parametrize("argv, expected", [
    ([], ("reports", "runs")),
    (["--output_dir", "a", "--runs_dir", "b"], ("a", "b")),
    (["--results_dir=a", "--out_dir=b"], ("a", "b")),
    (["--out_dir", "b", "--output_dir", "a"], ("a", "b")),
])
def test_argparse_takes_both_spellings(argv, expected):
    args = _parser().parse_args(argv)
    assert (args.output_dir, args.runs_dir) == expected
    assert sorted(vars(args)) == ["output_dir", "runs_dir"]


def test_argparse_help_shows_only_the_canonical_spelling():
    text = _parser().format_help()
    assert "--output_dir" in text and "--runs_dir" in text
    assert "--results_dir" not in text and "--out_dir" not in text


ABSL_SCRIPT = """
import sys
sys.path.insert(0, {benchmarks!r})
from absl import app, flags
import _outputs
_outputs.define_absl_dirs(flags, output_dir="reports", runs_dir="runs", name="nm")
FLAGS = flags.FLAGS
app.run(lambda argv: print(FLAGS.output_dir, FLAGS.runs_dir, _outputs.absl_report_base(FLAGS)))
"""


@pytest.mark.parametrize("argv, expected", [
    ([], "reports runs reports/nm"),
    (["--output_dir=a", "--runs_dir=b", "--name=c"], "a b a/c"),
    (["--results_dir=a", "--out_dir=b"], "a b a/nm"),
    (["--output=x/y"], "reports runs x/y"),
])
def test_absl_takes_both_spellings(tmp_path, argv, expected):
    script = tmp_path / "bench.py"
    script.write_text(ABSL_SCRIPT.format(benchmarks=os.path.abspath(BENCHMARKS)))
    out = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True,
                         check=True).stdout
    assert out.split("\n")[0] == expected
    if not argv:
        text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                              text=True, check=False).stdout  # absl's --help exits 1
        assert {"--output_dir", "--runs_dir", "--name"} <= set(re.findall(r"--\w+", text))
        assert not {"--results_dir", "--out_dir", "--output"} & set(re.findall(r"--\w+\b", text))


def test_no_benchmark_defines_an_old_spelling_itself():
    found = []
    for path in sorted(glob.glob(os.path.join(BENCHMARKS, "*.py"))):
        if os.path.basename(path) in LEAD_SCRIPTS + ("_outputs.py",):
            continue
        text = open(path, encoding="utf-8").read()
        found += [f"{os.path.basename(path)}: {m}" for m in re.findall(
            r"""(?:add_argument|DEFINE_\w+)\(\s*["'](?:--)?(out_dir|results_dir|output|output_dir|runs_dir)["']""",
            text)]
    assert found == []
