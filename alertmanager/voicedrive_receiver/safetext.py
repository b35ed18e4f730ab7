"""Alert text made safe for a terminal or a log stream: control characters become visible escapes.

Annotations come from whoever writes rules (or posts to the webhook): a raw ESC, CR, NUL or a
right-to-left override could forge log lines or hide text, so they are shown as ``\\x1b``,
``\\r``, ``\\x00``, ``\\u202e`` instead. Line breaks are text worth keeping, but a line
of an annotation must not pass for a new entry: ``continued`` prefixes every line it is given
with a fixed marker, so only the writer's own lines start at the margin.
"""

import re

# C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text
# (bidi embeddings/overrides/isolates, marks, zero-width, line/paragraph separators, BOM).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_UNSAFE_BUT_NEWLINE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)
# What the console and the Markdown checklists put before each line of alert text.
CONTINUATION = "  | "
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control/format character as a visible escape (``\\n`` kept if asked)."""
    pattern = _UNSAFE_BUT_NEWLINE if keep_newlines else _UNSAFE
    return pattern.sub(_escape, text)


def visible_json(dumped: str) -> str:
    """JSON text (already dumped) with the characters json.dumps leaves raw as ``\\uXXXX``."""
    # Outside strings a dump holds only newlines and spaces, so every match is inside a string.
    return _UNSAFE_BUT_NEWLINE.sub(lambda m: f"\\u{ord(m.group()):04x}", dumped)


def continued(text: str, *, marker: str = CONTINUATION, first: bool = True) -> str:
    """``text`` made visible with ``marker`` before each line (not the first unless ``first``)."""
    lines = visible(text, keep_newlines=True).split("\n")
    head = [f"{marker}{lines[0]}"] if first else lines[:1]
    return "\n".join([*head, *(f"{marker}{line}" for line in lines[1:])])
