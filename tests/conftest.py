"""Shared test fixtures.

``need(condition, reason)`` skips a test on a laptop that lacks root, a binary or
a kernel feature, and fails it instead when ``CI=true``: in CI every test must run.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def _need(condition: object, reason: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true, so this test may not skip: {reason}")
    pytest.skip(reason)


@pytest.fixture
def need():
    """``need(condition, reason)``: skip locally, fail in CI, when ``condition`` is false."""
    return _need


@pytest.fixture
def need_root():
    """Skip (fail in CI) unless running as root with iproute2 and network namespaces."""
    _need(os.geteuid() == 0, "needs root for network namespaces")
    _need(shutil.which("ip"), "needs the ip binary (iproute2)")


@pytest.fixture
def need_binary():
    """``need_binary(name)``: skip (fail in CI) when ``name`` is not on PATH; returns its path."""

    def check(name: str) -> str:
        path = shutil.which(name)
        _need(path, f"needs the {name} binary")
        return path

    return check
