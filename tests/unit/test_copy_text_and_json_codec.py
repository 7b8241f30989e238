"""COPY text formatting and the loaders' JSON codec: the fast paths give the standard results."""

from __future__ import annotations

import json

import pytest

from data_explorer.loaders import json_codec
from data_explorer.warehouse.copy_text import copy_text


def test_copy_text_escapes_what_copy_reads_specially():
    rows = [("a\\b", "tab\there", "line\nbreak\r", None, True, False, 7, 1.5, "ü")]
    assert copy_text(rows) == "a\\\\b\ttab\\there\tline\\nbreak\\r\t\\N\tt\tf\t7\t1.5\tü\n".encode()


def test_copy_text_refuses_what_it_cannot_write():
    with pytest.raises(TypeError):
        copy_text([({"a": 1},)])
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate: the loader then replaces it
        copy_text([("x\ud800",)])


def test_json_codec_takes_what_the_standard_library_takes():
    assert json_codec.loads(b'{"a": "x\\u0000\\ud800y", "b": [1, 2.5, null]}') == {"a": "x\x00\ud800y", "b": [1, 2.5, None]}
    assert json.loads(json_codec.dumps({"s": "x\ud800", "n": 2**70, "u": "ü"})) == {"s": "x\ud800", "n": 2**70, "u": "ü"}
    assert json_codec.dumps({"u": "ü"}) == '{"u":"ü"}'


@pytest.mark.parametrize("text", [b'{"a": NaN}', b'{"a": 1e400}', b'{"a": ', b"<html>"])
def test_json_codec_refuses_what_jsonb_cannot_hold(text):
    with pytest.raises(ValueError):
        json_codec.loads(text)
