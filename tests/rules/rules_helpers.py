"""Plain helpers for the rules tests (no conftest here: it would shadow the root one)."""

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def require_binary(name: str) -> str:
    """tests/conftest.py's require_binary (fails, never skips).

    Loaded by path: other test folders have their own conftest.py, and whichever was imported
    last owns the module name ``conftest``.
    """
    module = sys.modules.get("voicedrive_root_conftest")
    if module is None:
        path = REPO / "tests" / "conftest.py"
        spec = importlib.util.spec_from_file_location("voicedrive_root_conftest", path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["voicedrive_root_conftest"] = module
    found: str = module.require_binary(name)
    return found
