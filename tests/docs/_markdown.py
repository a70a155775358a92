"""Just enough Markdown reading for the documentation tests: fenced blocks, inline code, links
and the anchors GitHub makes from headings (CommonMark fences, GitHub's heading slugs)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES: tuple[Path, ...] = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))

NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(?P<reason>.*?)\s*-->$")
"""The marker of a Python block the tests must not execute, with its reason."""

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_INLINE = re.compile(r"(?<!`)(`+)(?!`)(?P<code>.+?)(?<!`)\1(?!`)")
_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*#*\s*$")


@dataclass(frozen=True)
class Block:
    """A fenced code block: where it starts (1-based line of its first code line), its info
    string's language, its text, and the reason of a ``not-run`` marker right before it."""

    page: Path
    line: int
    lang: str
    code: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


@cache
def blocks(page: Path) -> tuple[Block, ...]:
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    previous = ""  # the last non-blank line before a fence
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        fence = opening["fence"]
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            body.append(lines[j][len(opening["indent"]):] if lines[j].startswith(
                opening["indent"]) else lines[j])
            j += 1
        marker = NOT_RUN.match(previous)
        found.append(Block(page, i + 2, opening["info"].strip().split(" ")[0].lower(),
                           "\n".join(body) + "\n", marker["reason"] if marker else None))
        previous = ""
        i = j + 1
    return tuple(found)


@cache
def prose(page: Path) -> tuple[tuple[int, str], ...]:
    """(line number, text) of every line outside fenced blocks."""
    inside: set[int] = set()
    for block in blocks(page):
        end = block.line + block.code.count("\n")
        inside.update(range(block.line - 1, end + 1))
    lines = page.read_text(encoding="utf-8").splitlines()
    return tuple((n, text) for n, text in enumerate(lines, 1) if n not in inside)


def inline_code(page: Path) -> list[tuple[int, str]]:
    return [(n, m["code"].strip()) for n, text in prose(page) for m in _INLINE.finditer(text)]


def links(page: Path) -> list[tuple[int, str]]:
    """(line, target) of every Markdown link outside code."""
    found: list[tuple[int, str]] = []
    for n, text in prose(page):
        without_code = _INLINE.sub("", text)
        found.extend((n, m["target"]) for m in _LINK.finditer(without_code))
    return found


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link's text stays
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(page: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, text in prose(page):
        match = _HEADING.match(text)
        if match is None:
            continue
        base = slug(match["title"])
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)
