"""Retry-After and reply parsing shared by the HTTP channels."""

from datetime import UTC, datetime

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from voicedrive_receiver.channels import _http
from voicedrive_receiver.channels._http import failure, retry_after


def headers(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in values.items()}))


def test_retry_after_in_seconds() -> None:
    assert retry_after(headers(Retry_After="3")) == 3.0


def test_retry_after_as_http_date() -> None:
    now = datetime(2025, 9, 1, 0, 0, 0, tzinfo=UTC)
    value = headers(Retry_After="Mon, 01 Sep 2025 00:00:30 GMT")
    assert retry_after(value, now=now) == 30.0


def test_unparsable_or_missing_retry_after_is_none() -> None:
    assert retry_after(headers(Retry_After="soon")) is None
    assert retry_after(headers()) is None


def test_error_code_that_is_not_an_identifier_stays_out_of_detail() -> None:
    result = failure(400, headers(), what="x", code="<html>oops https://secret/path</html>")
    assert result.detail == "x: HTTP 400"
    assert result.permanent


def test_json_object_of_an_upstream_reply() -> None:
    assert _http.json_object('{"ok": true}') == {"ok": True}


@pytest.mark.parametrize("text", ["ok", "[1, 2]", "", "[" * 100_000 + "]" * 100_000])
def test_json_object_is_none_for_anything_but_a_json_object(text: str) -> None:
    assert _http.json_object(text) is None
