"""Fixtures of the end-to-end modules: projects reproduced once per test worker."""

from __future__ import annotations

import pytest

from ..support.project import reproduce
from ..support.shared_project import IRIS, Reproduced


@pytest.fixture(scope="session")
def reproduced_iris(tmp_path_factory) -> Reproduced:
    """iris with a small grid (``IRIS``), reproduced and committed once per test worker (under
    pytest-xdist a session is one worker). Never used in place: a module takes its own copy,
    ``copy_project(reproduced_iris.root, tmp_path_factory.mktemp(NAME))``."""
    root = tmp_path_factory.mktemp("iris-reproduced")
    return Reproduced(root, reproduce(root, **IRIS))
