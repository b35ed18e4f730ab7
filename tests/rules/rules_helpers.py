"""Plain helpers for the rules tests (no conftest here: it would shadow the root one)."""

from pathlib import Path

from binaries import require_binary

__all__ = ["require_binary"]

REPO = Path(__file__).resolve().parents[2]
