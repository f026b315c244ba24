"""The stream's wire format: both framings, page errors, API error bodies, malformed lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrag import AuthenticationError, MathpixError, PageMessage, RateLimitError, RetryPolicy, StreamFormatError
from streamrag._protocol import StreamState
from streamrag._stream import decode_line, encode_message, join_pages, raise_for_error_body, read_recording


def test_every_capture_decodes_and_rebuilds_its_mmd(captures: list[Path]) -> None:
    assert len(captures) >= 5
    for capture in captures:
        messages = read_recording(capture / "stream.json")
        assert messages, capture
        assert {m.pdf_selected_len for m in messages} == {len(messages)}
        assert join_pages(messages) == (capture / "result.mmd").read_text(encoding="utf-8")


@pytest.mark.parametrize("framing", ["lines", "sse"])
def test_encode_then_decode_round_trips(captures: list[Path], framing: str) -> None:
    for message in read_recording(captures[0] / "stream.json"):
        wire = encode_message(message, framing)  # type: ignore[arg-type]
        lines = [line for line in wire.decode().splitlines() if line.strip()]
        assert len(lines) == 1
        assert lines[0].startswith("data: ") == (framing == "sse")
        assert decode_line(lines[0]) == message


def test_blank_page_message_is_a_page_error() -> None:
    line = json.dumps(
        {
            "version": "SuperNet-101",
            "error": "Content not found",
            "error_info": {"id": "image_no_content", "message": "Content not found"},
            "page_idx": 2,
            "pdf_selected_len": 15,
        }
    )
    message = decode_line(line)
    assert message is not None and message.text is None
    assert message.error_info is not None and message.error_info.id == "image_no_content"


def test_keep_alive_and_sse_fields_are_not_pages() -> None:
    for line in ["", "   ", ": ping", "event: page", "id: 3", "retry: 1000", "data:"]:
        assert decode_line(line) is None


def test_error_body_with_http_200_raises_with_its_id() -> None:
    body = {"error": "PDF not found", "error_info": {"id": "pdf_unknown_id", "message": "PDF not found"}}
    with pytest.raises(MathpixError) as caught:
        decode_line(json.dumps(body))
    assert caught.value.error_id == "pdf_unknown_id"
    assert caught.value.status_code == 200
    with pytest.raises(MathpixError):
        decode_line("data: " + json.dumps(body))


def test_401_and_429_are_typed() -> None:
    with pytest.raises(AuthenticationError) as auth:
        raise_for_error_body({"error_info": {"id": "http_unauthorized", "message": "x"}}, 401)
    assert auth.value.error_id == "http_unauthorized"
    body = {"error_info": {"id": "http_max_requests", "message": "slow down", "limit_name": "page_monthly_limit"}}
    with pytest.raises(RateLimitError) as limited:
        raise_for_error_body(body, 429, retry_after=7.0)
    assert limited.value.retry_after == 7.0
    assert limited.value.info["limit_name"] == "page_monthly_limit"


@pytest.mark.parametrize(
    "line",
    [
        "{not json",
        '{"page_idx": 1}',  # neither text nor error
        '{"text": "x"}',  # no page_idx
        '{"page_idx": 0, "text": "x"}',  # page_idx is 1-based
        '{"page_idx": "one", "text": "x"}',
        "[1, 2]",
        b"\xff\xfe",
    ],
)
def test_malformed_lines_raise_stream_format_error(line: str | bytes) -> None:
    with pytest.raises(StreamFormatError):
        decode_line(line)


def test_unknown_fields_are_kept() -> None:
    message = decode_line('{"page_idx": 1, "text": "a", "pdf_selected_len": 1, "new_field": 3}')
    assert message is not None and message.model_extra == {"new_field": 3}


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200), JSONISH.map(json.dumps)))
def test_fuzzed_lines_give_a_page_nothing_or_a_typed_error(line: str | bytes) -> None:
    state = StreamState("fuzz", RetryPolicy())
    try:
        result = state.feed(line)
    except MathpixError:
        return  # an error body: typed, with its id
    assert result is None or isinstance(result, PageMessage)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_real_messages_never_crash_the_parser(captures: list[Path], data: st.DataObject) -> None:
    messages = read_recording(captures[0] / "stream.json")
    line = json.dumps(data.draw(st.sampled_from(messages)).wire())
    cut = data.draw(st.integers(0, len(line)))
    junk = data.draw(st.text(max_size=10))
    mutated = line[:cut] + junk + line[cut + data.draw(st.integers(0, 10)) :]
    state = StreamState("fuzz", RetryPolicy())
    try:
        result = state.feed(mutated)
    except MathpixError:
        return
    assert result is None or isinstance(result, PageMessage)
    assert state.skipped + (result is not None) <= 1
