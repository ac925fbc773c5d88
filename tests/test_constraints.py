"""constraints.txt, the versions `make` installs, agrees with pyproject.toml: every
dependency (and dev extra) is pinned, to a version pyproject allows."""

from __future__ import annotations

import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import REPO_ROOT

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
# What `make test` installs: the dependencies and the dev extra, with the extras it names
# (knnlab[team]) expanded; not the optional benchmark baselines.
DECLARED = [
    Requirement(text)
    for text in (
        *PYPROJECT["project"]["dependencies"],
        *EXTRAS["dev"],
        *EXTRAS["team"],
    )
    if canonicalize_name(Requirement(text).name) != "knnlab"
]


def test_the_dev_extra_includes_the_team_extra():
    assert "knnlab[team]" in EXTRAS["dev"], "the team set-up is tested: make test installs it"


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"constraints.txt: {line!r} is not name==version"
        pins[canonicalize_name(name)] = version
    return pins


@pytest.mark.parametrize("requirement", DECLARED, ids=str)
def test_every_declared_dependency_is_pinned_to_an_allowed_version(requirement):
    pins = _pins()
    name = canonicalize_name(requirement.name)
    assert name in pins, f"{requirement} is not pinned in constraints.txt: run `make constraints`"
    assert requirement.specifier.contains(pins[name], prereleases=True), (
        f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {requirement}"
    )


def test_the_pins_hold_neither_knnlab_nor_the_installer():
    assert not {"knnlab", "uv", "pip"} & set(_pins())
