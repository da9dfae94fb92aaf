"""The deployment package is built from a lock that pins every dependency with its hashes.

src/requirements.txt holds the direct pins (pyproject reads it); `./dev lock` compiles
src/requirements.lock from it with every transitive dependency and the sha256 of every
file PyPI has for each; src/Makefile is how `sam build` installs it, so pip refuses
any file or dependency the lock does not name.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from localdev.cfn_template import load_template

ROOT = Path(__file__).resolve().parents[2]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of src/requirements.lock."""
    text = (ROOT / "src" / "requirements.lock").read_text(encoding="utf-8").replace("\\\n", " ")
    pins: dict[str, tuple[str, list[str]]] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})*)", line)
        assert match, f"not an exact pin with hashes: {line}"
        pins[_normal(match.group(1))] = (match.group(2), re.findall(r"sha256:([0-9a-f]{64})", match.group(3)))
    return pins


def _direct() -> dict[str, str]:
    lines = (ROOT / "src" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    pins = [line.strip().split("==") for line in lines if line.strip() and not line.startswith("#")]
    return {_normal(name): version for name, version in pins}


def test_the_lock_pins_every_direct_requirement_at_its_version_and_every_pin_has_hashes() -> None:
    lock = _lock()

    assert {name: lock[name][0] for name in _direct() if name in lock} == _direct()
    assert all(hashes for _, hashes in lock.values())


def test_the_lock_covers_every_transitive_dependency() -> None:
    lock, wanted, seen = _lock(), list(_direct()), set()
    while wanted:
        name = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                wanted.append(_normal(requirement.name))

    assert sorted(seen - set(lock)) == []


def test_sam_build_installs_the_lock_with_hashes_for_the_functions_platform() -> None:
    template = load_template()
    functions = {n: r for n, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    makefile = (ROOT / "src" / "Makefile").read_text(encoding="utf-8")

    assert template["Globals"]["Function"]["Architectures"] == ["arm64"]
    assert template["Globals"]["Function"]["Runtime"] == "python3.13"
    for name, function in functions.items():
        assert function["Properties"]["CodeUri"] == "src/", name
        assert function.get("Metadata", {}).get("BuildMethod") == "makefile", name
    assert re.search(r"^build-%:", makefile, re.MULTILINE)
    for option in (
        "--require-hashes",
        "-r requirements.lock",
        "--only-binary=:all:",
        "--python-version 3.13",
    ):
        assert option in makefile, option
    assert "aarch64" in makefile and "x86_64" not in makefile
