"""Alertmanager-style label matchers: ``name="v"``, ``name!="v"``, ``name=~"re"``, ``name!~"re"``.

Regexes are anchored at both ends, as Alertmanager anchors them; a missing label matches as
the empty string, so ``team!="x"`` matches an alert without ``team``.
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from voicedrive_common.errors import ConfigError

Op = Literal["=", "!=", "=~", "!~"]
_MATCHER = re.compile(r"^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Matcher:
    """One label matcher."""

    name: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this matcher."""
        actual = labels.get(self.name, "")
        if self._regex is not None:
            hit = self._regex.fullmatch(actual) is not None
            return hit if self.op == "=~" else not hit
        return (actual == self.value) if self.op == "=" else (actual != self.value)


def parse_matcher(text: str, path: str) -> Matcher:
    """Parse one matcher string; ConfigError at ``path`` when it is malformed."""
    match = _MATCHER.match(text)
    if match is None:
        raise ConfigError(path, f"invalid matcher {text!r} (use e.g. 'component=\"database\"')")
    name, op, raw = match.group(1), match.group(2), match.group(3)
    if raw.startswith('"'):
        try:
            value = json.loads(raw)
        except ValueError:
            raise ConfigError(path, f"invalid quoted value in matcher {text!r}") from None
        if not isinstance(value, str):
            raise ConfigError(path, f"invalid quoted value in matcher {text!r}")
    else:
        value = raw
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise ConfigError(path, f"invalid regular expression {value!r}: {exc}") from None
    return Matcher(name=name, op=op, value=value, _regex=regex)  # type: ignore[arg-type]


def matches_all(matchers: tuple[Matcher, ...], labels: Mapping[str, str]) -> bool:
    """True when every matcher matches (an empty list matches everything)."""
    return all(m.matches(labels) for m in matchers)
