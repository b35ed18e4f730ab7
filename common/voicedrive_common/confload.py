"""Reading YAML config into typed, frozen objects with errors that name the key path.

Usage: ``root = load_yaml(path)``, then ``root.text("name", default=...)``, ``root.node("sub")``
and finally ``root.done()`` which rejects unknown keys.
"""

import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

from voicedrive_common.durations import parse_duration
from voicedrive_common.errors import ConfigError
from voicedrive_common.secrets import SecretRef

T = TypeVar("T")


class _Missing:
    def __repr__(self) -> str:
        return "<required>"


REQUIRED: Any = _Missing()
_FLOAT_MAX = sys.float_info.max


def load_yaml(path: str | Path) -> "Node":
    """Parse a YAML file whose top level is a mapping (an empty file is an empty mapping)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config file: {exc.strerror}", source=source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "", f"not UTF-8 text: invalid byte at offset {exc.start}", source=source
        ) from None
    return parse_yaml(text, source=source)


def parse_yaml(text: str, *, source: str | None = None) -> "Node":
    """Parse YAML text whose top level is a mapping."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(exc.path, exc.message, source=source) from None
    except RecursionError:
        raise ConfigError("", "invalid YAML: nested too deeply", source=source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError("", f"invalid YAML: {where}{problem}", source=source) from None
    except ValueError as exc:
        # A value that looks like a date but is not one (2026-13-45) fails in datetime.
        raise ConfigError("", f"invalid YAML value: {exc}", source=source) from None
    if data is None:
        data = {}
    return Node(data, "", source)


class _DuplicateKey(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def compose_document(self) -> yaml.Node | None:
        root = super().compose_document()
        if root is not None:
            _reject_duplicate_keys(root)
        return root


def _reject_duplicate_keys(root: yaml.Node) -> None:
    # Iterative, so that a deeply nested document is not a RecursionError here.
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                sub = f"{path}.{key_node.value}" if path else str(key_node.value)
                line = key_node.start_mark.line + 1
                ident = (key_node.tag, key_node.value)
                if key_node.tag != "tag:yaml.org,2002:merge" and ident in seen:
                    raise _DuplicateKey(
                        sub, f"duplicate key at line {line} (first given at line {seen[ident]})"
                    )
                seen[ident] = line
                stack.append((value_node, sub))


class Node:
    """A mapping being read; remembers its key path and which keys were consumed."""

    def __init__(self, data: object, path: str, source: str | None = None) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, f"expected a mapping, got {_kind(data)}", source=source)
        self._data: dict[Any, Any] = data
        self.path = path
        self.source = source
        self._used: set[str] = set()

    def error(self, key: str, message: str) -> ConfigError:
        """A ConfigError for ``key`` below this node."""
        return ConfigError(self._sub(key), message, source=self.source)

    def has(self, key: str) -> bool:
        """Whether ``key`` is present."""
        return key in self._data

    def keys(self) -> "list[str]":
        """All keys, as strings (a non-string key is an error)."""
        out = []
        for key in self._data:
            if not isinstance(key, str):
                raise ConfigError(
                    self.path, f"keys must be strings, got {key!r}", source=self.source
                )
            out.append(key)
        return out

    def raw(self, key: str, default: Any = REQUIRED) -> Any:
        """The untyped value of ``key``."""
        self._used.add(key)
        if key not in self._data or self._data[key] is None:
            if default is REQUIRED:
                raise self.error(key, "is required")
            return default
        return self._data[key]

    def text(self, key: str, default: Any = REQUIRED, *, choices: tuple[str, ...] = ()) -> Any:
        """A string; with ``choices``, one of them."""
        value = self.raw(key, default)
        if value is default and default is not REQUIRED:
            return value
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_kind(value)}")
        if choices and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def integer(
        self, key: str, default: Any = REQUIRED, *, lo: int | None = None, hi: int | None = None
    ) -> Any:
        """An integer within optional bounds."""
        value = self.raw(key, default)
        if value is default and default is not REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_kind(value)}")
        _bounds(self, key, value, lo, hi)
        return value

    def number(
        self,
        key: str,
        default: Any = REQUIRED,
        *,
        lo: float | None = None,
        hi: float | None = None,
    ) -> Any:
        """A number within optional bounds."""
        value = self.raw(key, default)
        if value is default and default is not REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {_kind(value)}")
        # NaN passes every bound check (all comparisons are false), so test it first.
        if (isinstance(value, int) and abs(value) > _FLOAT_MAX) or not math.isfinite(value):
            raise self.error(key, f"must be a finite number, got {value!r}")
        _bounds(self, key, value, lo, hi)
        return float(value)

    def flag(self, key: str, default: Any = REQUIRED) -> Any:
        """A boolean (true/false, not yes/no strings)."""
        value = self.raw(key, default)
        if value is default and default is not REQUIRED:
            return value
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_kind(value)}")
        return value

    def duration(self, key: str, default: Any = REQUIRED, *, lo: float | None = None) -> Any:
        """Seconds from a duration such as ``30s``."""
        value = self.raw(key, default)
        if value is default and default is not REQUIRED:
            return value
        seconds = self._with_source(parse_duration, value, key)
        if lo is not None and seconds < lo:
            raise self.error(key, f"must be at least {lo:g}s, got {value!r}")
        return seconds

    def sequence(self, key: str, default: Any = REQUIRED) -> Any:
        """A list (of anything; see ``strs`` and ``nodes``)."""
        value = self.raw(key, default)
        if value is default and default is not REQUIRED:
            return value
        if not isinstance(value, list):
            raise self.error(key, f"expected a list, got {_kind(value)}")
        return value

    def texts(self, key: str, default: Any = REQUIRED) -> Any:
        """A list of strings, returned as a tuple."""
        value = self.sequence(key, default)
        if value is default and default is not REQUIRED:
            return value
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(
                    f"{self._sub(key)}[{i}]",
                    f"expected a string, got {_kind(item)}",
                    source=self.source,
                )
        return tuple(value)

    def node(self, key: str, *, required: bool = False) -> "Node":
        """The mapping under ``key`` (an empty one when absent and not required)."""
        value = self.raw(key, REQUIRED if required else {})
        return Node(value, self._sub(key), self.source)

    def nodes(self, key: str, default: Any = REQUIRED) -> Any:
        """A list of mappings."""
        value = self.sequence(key, default)
        if value is default and default is not REQUIRED:
            return value
        return [Node(item, f"{self._sub(key)}[{i}]", self.source) for i, item in enumerate(value)]

    def items(self) -> Iterator[tuple[str, "Node"]]:
        """Every ``key: mapping`` pair, as child nodes (marks all keys used)."""
        for key in self.keys():
            self._used.add(key)
            yield key, Node(self._data[key], self._sub(key), self.source)

    def secret(self, key: str, *, required: bool = True) -> SecretRef | None:
        """A secret given as ``key`` (inline, ``${ENV}`` allowed) or ``key_file``, not both."""
        inline = self.raw(key, None)
        file = self.raw(f"{key}_file", None)
        if inline is not None and file is not None:
            raise self.error(key, f"set either {key} or {key}_file, not both")
        if inline is None and file is None:
            if required:
                raise self.error(key, f"is required (or {key}_file)")
            return None
        for name, value in ((key, inline), (f"{key}_file", file)):
            if value is not None and not isinstance(value, str):
                raise self.error(name, f"expected a string, got {_kind(value)}")
        return SecretRef(path=self._sub(key), inline=inline, file=file)

    def parse(self, key: str, fn: Callable[[Any, str], T], default: Any = REQUIRED) -> T:
        """Apply ``fn(value, path)`` to the raw value of ``key``."""
        value = self.raw(key, default)
        if value is default and default is not REQUIRED:
            return value  # type: ignore[no-any-return]
        return self._with_source(fn, value, key)

    def _with_source(self, fn: Callable[[Any, str], T], value: Any, key: str) -> T:
        """``fn(value, path)``, its ConfigError completed with this node's file name."""
        try:
            return fn(value, self._sub(key))
        except ConfigError as exc:
            if exc.source is not None or self.source is None:
                raise
            raise ConfigError(exc.path, exc.reason, source=self.source) from None

    def done(self) -> None:
        """Reject every key that was not read: typos must not pass silently."""
        unknown = [k for k in self._data if k not in self._used]
        if unknown:
            names = ", ".join(repr(k) for k in unknown)
            raise ConfigError(self.path, f"unknown key {names}", source=self.source)

    def _sub(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key


def _bounds(node: Node, key: str, value: float, lo: float | None, hi: float | None) -> None:
    if lo is not None and value < lo:
        raise node.error(key, f"must be at least {lo:g}, got {value!r}")
    if hi is not None and value > hi:
        raise node.error(key, f"must be at most {hi:g}, got {value!r}")


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
