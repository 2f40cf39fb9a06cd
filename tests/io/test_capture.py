"""Library output capture: what C code writes to descriptor 2 goes to the log, not the terminal."""

from __future__ import annotations

import logging
import os

import pytest

from vmgga.io.capture import library_output


def test_descriptor_2_output_is_captured_and_logged(capfd, caplog):
    with caplog.at_level(logging.DEBUG, logger="vmgga.libraries"):
        with library_output("a noisy call") as captured:
            os.write(2, b"HDF5-DIAG: Error detected\n  #000: details\n")
    assert captured.lines == ["HDF5-DIAG: Error detected", "  #000: details"]
    assert capfd.readouterr().err == ""
    assert "a noisy call printed:\nHDF5-DIAG: Error detected" in caplog.text
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"  # the terminal is back


def test_nested_blocks_each_see_their_own_output(capfd):
    with library_output("outer") as outer:
        os.write(2, b"one\n")
        with library_output("inner") as inner:
            os.write(2, b"two\n")
        os.write(2, b"three\n")
    assert inner.text == "two\n"
    assert outer.text == "one\ntwo\nthree\n"
    assert capfd.readouterr().err == ""


def test_descriptor_is_restored_when_the_call_raises(capfd):
    with pytest.raises(RuntimeError, match="boom"):
        with library_output("failing call") as captured:
            os.write(2, b"library complaint\n")
            raise RuntimeError("boom")
    assert captured.text == "library complaint\n"
    os.write(2, b"visible\n")
    assert capfd.readouterr().err == "visible\n"
