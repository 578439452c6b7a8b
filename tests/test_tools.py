"""The suite's own rule for optional parts (tests/tools.py): a test whose part is missing skips
where it may be missing, and fails under CI, which installs every part."""

import pytest
from tools import has, require


def test_a_missing_part_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    for check in (require, has):
        with pytest.raises(pytest.fail.Exception, match="numba is not installed"):
            check(False, "numba is not installed")
    require(True, "present")  # nothing happens
    assert has(True, "present")


def test_a_missing_part_skips_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="numba is not installed"):
        require(False, "numba is not installed")
    # has() leaves the test running: its caller leaves out the part that needs what is missing.
    assert has(False, "numba is not installed") is False
