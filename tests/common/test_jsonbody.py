"""The shared JSON body decoder: every undecodable body is a JsonBodyError naming the problem."""

import pytest

from voicedrive_common.jsonbody import JsonBodyError, parse_json_bytes, parse_json_text


def test_valid_json_is_decoded() -> None:
    assert parse_json_text('{"a": [1, "😀"]}') == {"a": [1, "😀"]}


def test_escaped_surrogate_pair_is_an_ordinary_character() -> None:
    assert parse_json_text(r'"\ud83d\ude00"') == "😀"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{", "invalid JSON at line 1, column 2"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ("1" * 5000, "digits"),
        (r'{"a": "\ud800"}', "lone UTF-16 surrogate"),
    ],
)
def test_undecodable_text_is_a_json_body_error_naming_why(text: str, reason: str) -> None:
    with pytest.raises(JsonBodyError, match=reason):
        parse_json_text(text)


def test_body_that_is_not_utf8_names_the_byte() -> None:
    with pytest.raises(JsonBodyError, match="not UTF-8 \\(byte 2\\)"):
        parse_json_bytes(b'{"\xff"}')
