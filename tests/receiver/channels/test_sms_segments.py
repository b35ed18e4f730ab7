"""SMS length rules: GSM-7 vs UCS-2, segment sizes, surrogate pairs, the segment cap."""

import pytest

from voicedrive_receiver.channels.sms import (
    encoding_of,
    fit,
    length_in_units,
    split_segments,
)

KANA = "あ"
EMOJI = "🚨"  # outside the BMP: two UTF-16 code units


def test_japanese_text_is_ucs2() -> None:
    assert encoding_of("障害発生") == "UCS-2"


def test_plain_ascii_is_gsm7() -> None:
    assert encoding_of("VoiceDrive L3: notifications failing") == "GSM-7"


def test_70_japanese_characters_fit_one_segment() -> None:
    assert len(split_segments(KANA * 70)) == 1


def test_71_japanese_characters_need_two_segments() -> None:
    assert len(split_segments(KANA * 71)) == 2


def test_concatenated_ucs2_segments_hold_67_units() -> None:
    segments = split_segments(KANA * 135)
    assert [len(s) for s in segments] == [67, 67, 1]


def test_gsm7_single_is_160_and_segments_153() -> None:
    assert len(split_segments("a" * 160)) == 1
    assert [len(s) for s in split_segments("a" * 161)] == [153, 8]


def test_gsm7_extension_characters_count_two() -> None:
    assert length_in_units("[€]") == 6
    assert len(split_segments("€" * 80)) == 1
    assert len(split_segments("€" * 81)) == 2


def test_surrogate_pair_counts_two_units() -> None:
    assert length_in_units(EMOJI) == 2
    assert len(split_segments(EMOJI * 35)) == 1
    assert len(split_segments(EMOJI * 35 + KANA)) == 2


def test_surrogate_pair_is_never_split_across_segments() -> None:
    # 66 units of kana leave one unit in the first segment: the emoji must start the next one.
    text = KANA * 66 + EMOJI + KANA * 10
    segments = split_segments(text)
    assert segments[0] == KANA * 66
    assert segments[1].startswith(EMOJI)
    assert "".join(segments) == text
    for segment in segments:
        assert length_in_units(segment, "UCS-2") <= 67
        segment.encode("utf-16-le")  # a lone surrogate would not encode


def test_fit_keeps_text_within_the_cap() -> None:
    result = fit(KANA * 100, max_segments=2)
    assert result == fit(KANA * 100, 2)
    assert result.segments == 2
    assert not result.truncated


def test_fit_truncates_with_an_ellipsis_at_the_cap() -> None:
    result = fit(KANA * 500, max_segments=2)
    assert result.truncated
    assert result.text == KANA * 133 + "…"
    assert len(split_segments(result.text)) == 2


def test_fit_to_one_segment_uses_the_70_unit_single_limit() -> None:
    result = fit(KANA * 200, max_segments=1)
    assert result.text == KANA * 69 + "…"
    assert result.segments == 1


def test_fit_gsm7_uses_an_ascii_ellipsis_and_stays_gsm7() -> None:
    result = fit("a" * 400, max_segments=1)
    assert result.text == "a" * 157 + "..."
    assert result.encoding == "GSM-7"


@pytest.mark.parametrize("cap", [1, 2, 3])
def test_fit_never_leaves_half_a_surrogate_pair(cap: int) -> None:
    result = fit(EMOJI * 300, max_segments=cap)
    result.text.encode("utf-16-le")
    assert result.text.endswith(EMOJI + "…")
    assert result.segments == cap
