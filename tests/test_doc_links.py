"""Every relative link in the user-facing pages resolves: the README, docs/*.md and the reading of the reference
reports. A link's file (or folder) must exist, and a `#anchor` must name a heading of the page it points to, by
GitHub's rule for heading ids (lowercase; drop everything but letters, digits, `_`, `-` and spaces; spaces become
`-`; a repeated heading gets `-1`, `-2`, …)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "results" / "reference" / "README.md"]

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
INLINE_LINK = re.compile(r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.M)
HTML_ID = re.compile(r"<a\s[^>]*(?:name|id)=\"([^\"]+)\"", re.I)


def prose(text: str) -> str:
    """The page without its code: fenced blocks emptied (their `#` lines are comments, not headings), spans blanked."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return CODE_SPAN.sub(lambda m: m.group(0)[1:-1].replace("[", "(").replace("]", ")"), text)


def kept_in_id(c: str) -> bool:
    """Letters, marks, numbers and connector punctuation (`_`) stay in a heading's id; other punctuation goes."""
    category = unicodedata.category(c)
    return category[0] in "LMN" or category == "Pc"


def slug(heading: str) -> str:
    """GitHub's id for a heading's text: what it renders (link text, code without backticks), then the rule above."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    kept = "".join(c for c in text if c in " -" or kept_in_id(c))
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = page.read_text()
    seen: dict[str, int] = {}
    ids = set(HTML_ID.findall(text))
    for heading in HEADING.findall(FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)):
        base = slug(heading.replace("`", ""))
        n = seen.get(base, 0)
        seen[base] = n + 1
        ids.add(base if n == 0 else f"{base}-{n}")
    return ids


def links(page: Path) -> list[str]:
    text = prose(page.read_text())
    return INLINE_LINK.findall(text) + REFERENCE_DEF.findall(text)


def broken_links(page: Path) -> list[str]:
    """Each relative link of `page` whose file or heading does not exist, with the reason."""
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: — not ours to check
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert page.is_file()
    assert not broken_links(page), f"{page.relative_to(ROOT)}: " + "; ".join(broken_links(page))


def test_slugs_follow_githubs_rule():
    assert slug("Protocol 3 (2026-12-06): paired runs and the review's defects") == \
        "protocol-3-2026-12-06-paired-runs-and-the-reviews-defects"
    assert slug("Tuning: hatswap tune") == "tuning-hatswap-tune"
    assert slug("1. Dense suite: the learning-rate schedule") == "1-dense-suite-the-learning-rate-schedule"
    assert slug("The dense suite: segmentation → detection → classification") == \
        "the-dense-suite-segmentation--detection--classification"
    assert slug("what_it does (benchmark/pretrain/)") == "what_it-does-benchmarkpretrain"


def test_the_check_finds_a_missing_file_a_missing_heading_and_ignores_code(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n## A section\n## A section\n```python\n# not a heading\n```\n")
    page = tmp_path / "page.md"
    page.write_text("# Title\n[ok](other.md#a-section) [dup](other.md#a-section-1) [self](#title) "
                    "[web](https://example.com/x#y) `[in code](gone.md)`\n"
                    "[gone](gone.md) [bad](other.md#not-a-heading) [comment](other.md#not-a-heading-either)\n"
                    "```\n[in a fence](also-gone.md)\n```\n[def]: other.md#nowhere\n")
    assert [b.split(":")[0] for b in broken_links(page)] == \
        ["gone.md", "other.md#not-a-heading", "other.md#not-a-heading-either", "other.md#nowhere"]
