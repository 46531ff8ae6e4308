"""The files a reader looks for at the root: the license pyproject names, a citation of the paper
the project implements, and a README short enough to read in five minutes."""

import re
import tomllib
from pathlib import Path

import yaml

import harness_ext

ROOT = Path(__file__).resolve().parents[1]


def test_the_license_file_is_the_license_pyproject_declares():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert declared == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License\n")


def test_the_citation_names_the_paper_and_this_version():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["version"] == harness_ext.__version__
    paper = citation["preferred-citation"]
    assert paper["title"] == "A Closer Look at Machine Unlearning for Large Language Models"
    assert paper["year"] == 2025 and "2410.08109" in paper["url"]


def slugs(text: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as dashes."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", text, flags=re.S), re.M):
        found.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return found


def test_the_readme_is_short_and_links_only_to_pages_and_headings_that_exist():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        for target, anchor in re.findall(r"\]\(([^)#:]*\.md)?(?:#([^)]*))?\)", text):
            linked = page.parent / target if target else page
            assert linked.exists(), f"{page.name} links to {target}, which does not exist"
            if anchor:
                assert anchor in slugs(linked.read_text()), f"{page.name}: no #{anchor} in {target}"
