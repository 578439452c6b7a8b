"""Fixtures of the command-line tests."""

import pytest
from bad_inputs import build_world


@pytest.fixture(scope="session")
def world(tmp_path_factory, demo_root) -> dict:
    """What the bad-input tests aim at (see tests/bad_inputs.py), built once per session."""
    return build_world(tmp_path_factory.mktemp("bad_inputs"), demo_root)
