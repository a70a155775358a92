"""Relative links in README.md and docs/*.md resolve: the file or directory exists and an
``#anchor`` names a heading of the target page (as GitHub renders it); every page is reachable
from README.md and docs/index.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._markdown import PAGES, ROOT, anchors, links, slug

_EXTERNAL = ("http://", "https://", "mailto:")

LINKS = [(page, line, target) for page in PAGES for line, target in links(page)
         if not target.startswith(_EXTERNAL)]


@pytest.mark.parametrize(("page", "line", "target"), LINKS,
                         ids=[f"{p.relative_to(ROOT)}:{n}:{t}" for p, n, t in LINKS])
def test_relative_link_resolves(page: Path, line: int, target: str) -> None:
    """The linked file exists inside the repository, and so does the heading it points at."""
    path, _, anchor = target.partition("#")
    resolved = (page.parent / path).resolve() if path else page
    assert resolved.is_relative_to(ROOT), f"{target} leaves the repository"
    assert resolved.exists(), f"{page.name}:{line}: {target} does not exist"
    if anchor:
        assert resolved.suffix == ".md", f"{target}: an anchor into a non-Markdown file"
        assert anchor in anchors(resolved), \
            f"{page.name}:{line}: no heading #{anchor} in {resolved.name}"


@pytest.mark.parametrize("hub", ["README.md", "docs/index.md"])
def test_every_page_is_linked_from(hub: str) -> None:
    """README.md and docs/index.md each link to every page under docs/."""
    page = ROOT / hub
    linked = {(page.parent / target.partition("#")[0]).resolve()
              for _, target in links(page) if not target.startswith(_EXTERNAL)}
    missing = [p.name for p in PAGES if p.parent.name == "docs" and p not in linked
               and p != page]
    assert missing == []


def test_slugs_follow_github() -> None:
    """Headings become GitHub's anchors: code marks and punctuation dropped, spaces hyphens."""
    assert slug("`ragtrail events`") == "ragtrail-events"
    assert slug("Archives (DOCX, XLSX, PPTX)") == "archives-docx-xlsx-pptx"
    assert slug("Draining on SIGTERM") == "draining-on-sigterm"
    assert len(LINKS) >= 10
