"""`voicedrive-mixin`: write (or, with --check, verify) every file generated from the thresholds.

Generators are listed in ``GENERATORS``: a ``File`` owns a whole file, a ``Section`` owns the
text between two markers of a hand-written file (the README). Another generator (dashboards)
registers by appending ``File("grafana/dashboards/x.json", render)`` where ``render`` takes the
``Thresholds`` and returns the file's text.
"""

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from voicedrive_common.errors import ConfigError
from voicedrive_mixin import dashboards, readme, rules
from voicedrive_mixin.thresholds import DEFAULT_PATH, Thresholds, load_thresholds

ROOT = DEFAULT_PATH.parent.parent


@dataclass(frozen=True)
class File:
    """A whole generated file, ``path`` relative to the repository (or output) root."""

    path: str
    render: Callable[[Thresholds], str]


@dataclass(frozen=True)
class Section:
    """The text between ``begin`` and ``end`` markers inside a hand-written file."""

    path: str
    render: Callable[[Thresholds], str]
    begin: str = readme.BEGIN
    end: str = readme.END


GENERATORS: list[File | Section] = [
    File("prometheus/rules/voicedrive.rules.yml", rules.rule_file),
    Section("README.md", readme.alert_table),
    File(dashboards.PATH, dashboards.overview),
]


def expected(t: Thresholds, root: Path, *, sections: bool = True) -> dict[Path, str]:
    """What every generated file should contain (Sections need the file's current text)."""
    out: dict[Path, str] = {}
    for gen in GENERATORS:
        target = root / gen.path
        if isinstance(gen, File):
            out[target] = gen.render(t)
        elif sections:
            current = target.read_text(encoding="utf-8")
            out[target] = readme.splice(current, gen.render(t), begin=gen.begin, end=gen.end)
    return out


def stale(t: Thresholds, root: Path) -> list[Path]:
    """Generated files under ``root`` whose content differs from what ``t`` produces."""
    found = []
    for path, content in expected(t, root).items():
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            found.append(path)
    return found


def write(t: Thresholds, root: Path, *, sections: bool = True) -> list[Path]:
    """Write every generated file below ``root``; returns the files that changed."""
    changed = []
    for path, content in expected(t, root, sections=sections).items():
        if path.exists() and path.read_text(encoding="utf-8") == content:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        changed.append(path)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `voicedrive-mixin` console script."""
    parser = argparse.ArgumentParser(
        prog="voicedrive-mixin",
        description="Generate Prometheus rules, dashboards and the README alert table "
        "from mixin/thresholds.yml.",
    )
    parser.add_argument("--thresholds", type=Path, default=None, help="thresholds file")
    parser.add_argument(
        "--overrides", type=Path, default=None, help="YAML merged over the thresholds"
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="write the generated files below DIR instead of the repository "
        "(required with --overrides; the README is not written there)",
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 naming every stale file; write nothing"
    )
    args = parser.parse_args(argv)
    if args.overrides is not None and args.output_dir is None and not args.check:
        # Deployment values must never end up in the repository's checked-in files.
        parser.error("--overrides needs --output-dir")
    try:
        t = load_thresholds(args.thresholds, args.overrides)
    except ConfigError as exc:
        print(f"voicedrive-mixin: {exc}", file=sys.stderr)
        return 1
    if args.check:
        try:
            found = stale(t, args.root)
        except (OSError, ValueError) as exc:
            print(f"voicedrive-mixin: {exc}", file=sys.stderr)
            return 1
        for path in found:
            print(f"stale: {_rel(path, args.root)} (run `make generate`)", file=sys.stderr)
        return 1 if found else 0
    base = args.output_dir if args.output_dir is not None else args.root
    try:
        changed = write(t, base, sections=args.output_dir is None)
    except (OSError, ValueError) as exc:
        print(f"voicedrive-mixin: {exc}", file=sys.stderr)
        return 1
    for path in changed:
        print(f"wrote {_rel(path, base)}")
    return 0


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
