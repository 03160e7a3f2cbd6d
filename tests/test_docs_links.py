"""Every relative link of the README, the CHANGELOG and docs/ leads somewhere: the file exists
and, for a link to a Markdown heading, the heading does (GitHub's anchors)."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md", "CHANGELOG.md"] + [os.path.join("docs", name) for name in
                                        sorted(os.listdir(os.path.join(ROOT, "docs")))
                                        if name.endswith(".md")]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(path):
    """The anchors GitHub gives the headings of the Markdown file ``path``."""
    seen, found = {}, set()
    in_code = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("```"):
                in_code = not in_code
            if in_code or not line.startswith("#"):
                continue
            text = line.lstrip("#").strip().lower()
            slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def test_the_slugs_are_githubs():
    assert re.sub(r"[^\w\- ]", "", "your own data (`--dataset=folder`)").replace(" ", "-") \
        == "your-own-data---datasetfolder"


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
    broken = []
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        text = f.read()
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):  # http(s):, mailto:, file:
            continue
        path, _, anchor = target.partition("#")
        full = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path \
            else os.path.join(ROOT, page)
        if not os.path.exists(full):
            broken.append(f"{target}: no {os.path.relpath(full, ROOT)}")
        elif anchor and full.endswith(".md") and anchor not in anchors(full):
            broken.append(f"{target}: no heading #{anchor} in {os.path.relpath(full, ROOT)}")
    assert not broken, f"{page}: " + "; ".join(broken)


# The flags the pages' commands pass to the project's scripts exist (a renamed or removed
# flag left in the docs is a command that fails for the user who copies it).
SCRIPT_COMMAND = re.compile(r"python3? (?:examples|tools|benchmarks)/\w+\.py")
FLAG = re.compile(r"(?<![\w-])--([A-Za-z][\w-]*)")


def project_flags():
    """Every flag the project defines: absl ``DEFINE_*``, argparse ``add_argument`` and the
    recipe configuration's ``_flag`` fields (training/config.py)."""
    import glob
    found = set()
    for folder in ("keras_fcn", "examples", "tools", "benchmarks"):
        for path in glob.glob(os.path.join(ROOT, folder, "**", "*.py"), recursive=True):
            with open(path, encoding="utf-8") as f:
                text = f.read()
            found |= set(re.findall(r"DEFINE_\w+\(\s*[\"'](\w+)[\"']", text))
            found |= set(re.findall(r"[\"']--([\w-]+)[\"']", text))
            found |= set(re.findall(r"^\s+(\w+): [^=\n]+= _flag\(", text, re.M))
    return found


def documented_commands(path):
    """(line, command) of each shell line of ``path`` (code blocks, continuations joined, and
    inline code) that runs one of the project's scripts."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    commands = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0]
            if not line.lstrip().startswith("#") and SCRIPT_COMMAND.search(line):
                commands.append(line.strip())
    commands += [code for code in re.findall(r"`([^`\n]+)`", text) if SCRIPT_COMMAND.search(code)]
    return commands


def test_documented_flags_exist():
    flags = project_flags()
    unknown = []
    for page in PAGES:
        for command in documented_commands(os.path.join(ROOT, page)):
            for flag in FLAG.findall(command):
                if flag not in flags and not (flag.startswith("no") and flag[2:] in flags):
                    unknown.append(f"{page}: --{flag} in {command[:80]!r}")
    assert not unknown, "\n".join(unknown)
    assert len(flags) > 150  # the scan found the project's flags


def test_a_renamed_flag_would_be_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```bash\npython examples/train.py --dataset=camvid \\\n  --crop_sise=1,2\n```"
                    "\nand `python tools/predict.py --model=m.keras`\n")
    commands = documented_commands(str(page))
    assert commands == ["python examples/train.py --dataset=camvid    --crop_sise=1,2",
                        "python tools/predict.py --model=m.keras"]
    flags = project_flags()
    assert [f for c in commands for f in FLAG.findall(c) if f not in flags] == ["crop_sise"]
