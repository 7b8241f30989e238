"""The loaders' JSON codec: the fast path gives the standard results."""

from __future__ import annotations

import json

import pytest

from data_explorer.loaders import json_codec


def test_json_codec_takes_what_the_standard_library_takes():
    assert json_codec.loads(b'{"a": "x\\u0000\\ud800y", "b": [1, 2.5, null]}') == {"a": "x\x00\ud800y", "b": [1, 2.5, None]}
    assert json.loads(json_codec.dumps({"s": "x\ud800", "n": 2**70, "u": "ü"})) == {"s": "x\ud800", "n": 2**70, "u": "ü"}
    assert json_codec.dumps({"u": "ü"}) == '{"u":"ü"}'


@pytest.mark.parametrize("text", [b'{"a": NaN}', b'{"a": 1e400}', b'{"a": ', b"<html>"])
def test_json_codec_refuses_what_jsonb_cannot_hold(text):
    with pytest.raises(ValueError):
        json_codec.loads(text)
