"""Finding the real binaries the integration tests run (importable: conftest modules are not)."""

import shutil

import pytest


def require_binary(name: str) -> str:
    """Path of a real binary; a missing one fails the test (never skips): CI must have it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed; run scripts/ensure-system-packages.sh", pytrace=False
        )
    return path
