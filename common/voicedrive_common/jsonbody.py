"""Decode an HTTP request's JSON body without letting odd input escape as a server error."""

import json
import re

# A \uD800-\uDFFF escape: the only way a JSON text yields a string that is not valid Unicode.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class JsonBodyError(ValueError):
    """The body is not JSON this process can decode; ``reason`` says why, for a 400."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_json_text(text: str) -> object:
    """Decode ``text``; JsonBodyError (never RecursionError or a bare ValueError) when it fails."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonBodyError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        # The C decoder recurses per nesting level: thousands of '[' exhaust the stack.
        raise JsonBodyError("invalid JSON: nested too deeply") from None
    except ValueError as exc:
        # e.g. an integer longer than Python's int-from-text digit limit.
        raise JsonBodyError(f"invalid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(text):
        # Paired escapes (an emoji) are fine; a lone one cannot be stored or sent on as UTF-8.
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise JsonBodyError("invalid JSON: a string holds a lone UTF-16 surrogate") from None
        except RecursionError:
            raise JsonBodyError("invalid JSON: nested too deeply") from None
    return data


def parse_json_bytes(body: bytes) -> object:
    """Decode a UTF-8 JSON body; JsonBodyError names a bad byte or the JSON problem."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonBodyError(f"body is not UTF-8 (byte {exc.start})") from None
    return parse_json_text(text)
