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
