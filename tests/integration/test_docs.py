"""The repository explains itself: no pointers outside it, links that resolve, commands that exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import ROOT

# Paths of the workplace the project was started in, which a clone does not have.
# (Written so that these patterns do not match their own source.)
OUTSIDE = re.compile(
    r"shared/(?:reference|seed)\b|\.\./(?:reference|see[d]|share[d])/|\bsee[d]/|/wor[k]/"
    r"|StripeV1CreateCheckout\.tx[t]"
)
DOCS = ("README.md", "docs/contract.md")


def _project_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def test_no_file_points_outside_the_repository() -> None:
    found = []
    for path in _project_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # images
        for number, line in enumerate(text.splitlines(), 1):
            for match in OUTSIDE.finditer(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {match.group()}")

    assert not found, "references to files outside the repository:\n" + "\n".join(found)


def test_links_in_the_docs_resolve_to_files_and_anchors_in_the_repository() -> None:
    broken = []
    for doc in DOCS:
        text = (ROOT / doc).read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (ROOT / doc).parent / file_part if file_part else ROOT / doc
            if not linked.resolve().is_relative_to(ROOT) or not linked.exists():
                broken.append(f"{doc}: {target}")
            elif anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), re.MULTILINE)
                slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
                if anchor not in slugs:
                    broken.append(f"{doc}: {target} (no such heading)")

    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_readme_links_the_contract() -> None:
    assert "(docs/contract.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_dev_command_in_the_readme_exists() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    help_text = subprocess.run(
        ["bash", str(ROOT / "dev"), "help"], capture_output=True, text=True, check=True
    ).stdout
    known = set(re.findall(r"^  ([a-z-]+)", help_text, re.MULTILINE))

    used = set(re.findall(r"\./dev ([a-z][a-z-]*)", readme))

    assert used, "the README shows no ./dev command"
    assert used <= known, f"README uses ./dev commands that do not exist: {sorted(used - known)}"
