"""Parsing of the core's ``--progress-json`` lines, including malformed and non-JSON output."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from VMGGARegistrationLib.events import (
    DoneEvent,
    ErrorEvent,
    LineSplitter,
    LogLine,
    ProgressEvent,
    parse_line,
)


def test_progress_event():
    line = json.dumps({"event": "progress", "stage": "affine", "fraction": 0.4, "message": "level 2/3"})
    assert parse_line(line) == ProgressEvent("affine", 0.4, "level 2/3")


def test_progress_fraction_is_clamped_and_optional_fields_default():
    assert parse_line('{"event": "progress", "fraction": 1.7}') == ProgressEvent("", 1.0, "")
    negative = parse_line('{"event": "progress", "stage": "dense", "fraction": -3}')
    assert negative == ProgressEvent("dense", 0.0, "")


def test_done_event_keeps_outputs():
    outputs = {"transform": "/o/transform.h5", "warped": "/o/warped.nii.gz"}
    assert parse_line(json.dumps({"event": "done", "outputs": outputs}) + "\r\n") == DoneEvent(outputs)


def test_error_event_with_and_without_message():
    assert parse_line('{"event": "error", "message": "fixed.nii: not 3D"}') == ErrorEvent("fixed.nii: not 3D")
    assert parse_line('{"event": "error"}').message.startswith("the registration failed")


def test_blank_lines_are_ignored():
    assert parse_line("") is None
    assert parse_line("   \t ") is None


def test_non_json_and_malformed_lines_become_log_lines():
    for line in [
        "Traceback (most recent call last):",
        '{"event": "progress", "fraction": 0.5',  # truncated JSON
        "[1, 2, 3]",  # JSON, but not an object
        '"just a string"',
        '{"event": "progress", "fraction": "half"}',  # fraction not a number
        '{"event": "progress", "fraction": NaN}',  # json accepts NaN; not a usable fraction
        '{"event": "progress", "fraction": true}',
        '{"event": "done", "outputs": ["transform.h5"]}',  # outputs not a mapping
        '{"event": "done", "outputs": {"transform": 3}}',  # path not a string
        '{"event": "finished"}',  # unknown event
        '{"stage": "affine", "fraction": 0.1}',  # no event key
    ]:
        assert parse_line(line) == LogLine(line.strip()), line


def test_splitter_joins_lines_split_across_chunks():
    splitter = LineSplitter()
    assert splitter.feed(b'{"event": "prog') == []
    assert splitter.feed(b'ress", "fraction": 0.5}\nnext') == ['{"event": "progress", "fraction": 0.5}']
    assert splitter.feed(b" line\r") == []
    assert splitter.feed(b"\nlast") == ["next line"]  # \r\n split across two chunks is one line end
    assert splitter.flush() == ["last"]
    assert splitter.flush() == []


def test_splitter_handles_lone_carriage_returns_and_bad_utf8():
    splitter = LineSplitter()
    assert splitter.feed(b"10%\r20%\rok \xff\xfe\n") == ["10%", "20%", "ok \ufffd\ufffd"]


#: Any encodable character except the two the splitter treats as line ends.
LINE_CHARACTERS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n")


@given(
    lines=st.lists(st.text(alphabet=LINE_CHARACTERS, max_size=20), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_splitter_gives_the_same_lines_for_any_chunking(lines, cuts):
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    splitter = LineSplitter()
    received = []
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        received += splitter.feed(data[start:stop])
    assert received + splitter.flush() == lines
