"""Pure parts of the simulator, without HTTP: ids, dates, cursors, rendering, paging arithmetic."""

from __future__ import annotations

import json

import pytest

from data_explorer.simulator.cases import render
from data_explorer.simulator.config import DomainConfig, FaultConfig, FaultRule, demo_config
from data_explorer.simulator.dataset import ProjectSpace
from data_explorer.simulator.forms import ARCHIVE_EVERY
from data_explorer.simulator.pools import ASCII, UTF8
from data_explorer.simulator.cli import add_arguments, build_config
from data_explorer.simulator.config import Quota, WireBehaviour
from data_explorer.simulator.queries import (
    ApiError, encode_cursor, parse_case_query, parse_commcare_date, parse_paging, parse_strict,
)
from data_explorer.simulator.stamps import spell
from data_explorer.simulator.synth import make_tag, mix64, parse_id, record_id, unmix64


def test_ids_are_reversible_and_checked():
    tag = make_tag(7, "demo", "case")
    for index in (0, 1, 4095, 999_999, 2**40 - 1):
        assert parse_id(record_id(tag, index)) == (tag, index)
    assert parse_id("00000000-0000-0000-0000-000000000000") is None
    assert parse_id(record_id(tag, 5)[:-1] + "0") in (None, (tag, 5)) and parse_id("x") is None
    assert all(unmix64(mix64(x)) == x for x in (0, 1, 2**63, 2**64 - 1, 123456789))


def test_form_dates_accept_the_documented_forms_only():
    assert parse_strict("2024-05-01", end=True) - parse_strict("2024-05-01", end=False) == 86_400_000_000 - 1
    assert parse_strict("2024-05-01T10:00Z", end=False) == parse_strict("2024-05-01T10:00:00", end=False)
    assert parse_strict("2024-05-01T10:00:00.5", end=False) == parse_strict("2024-05-01T10:00:00.500000Z", end=False)
    for bad in ("2024-05-01T10:00:00+00:00", "2024-05-01 10:00:00", "20240501", ""):
        with pytest.raises(ValueError):
            parse_strict(bad, end=False)


def test_cursor_round_trip_keeps_parameters_and_replaces_position():
    params = (("limit", "10"), ("case_type", "patient"), ("indexed_on.gte", "2024-01-01"))
    cursor = encode_cursor(params, "2024-03-01T00:00:00.000001Z", "abc")
    query = parse_case_query([("cursor", cursor), ("limit", "99")])
    assert query.limit == 10 and query.params == (("limit", "10"), ("case_type", "patient"))
    assert query.after_text == "2024-03-01T00:00:00.000001Z" and query.after[1] == "abc"


def test_tastypie_paging_rules():
    assert parse_paging([], 20, 1000) == (20, 0)
    assert parse_paging([("limit", "0")], 20, 1000) == (1000, 0)
    assert parse_paging([("limit", "5000"), ("offset", "7")], 20, 1000) == (1000, 7)
    with pytest.raises(ApiError):
        parse_paging([("offset", "-1")], 20, 1000)


def test_rendered_cases_are_the_values_in_both_encodings():
    space = ProjectSpace(DomainConfig("demo", cases=64), 3)
    space.mutate(update_cases=10, new_cases=10)
    for index in range(74):
        values = space.cases.values(index, space.cases.states.get(index))
        ascii_text, utf8_text = render(space.cases, values, ASCII), render(space.cases, values, UTF8)
        assert ascii_text.isascii()
        decoded = json.loads(ascii_text)
        assert decoded == json.loads(utf8_text)
        assert decoded["properties"] == values.properties
        assert decoded["case_id"] == values.case_id and decoded["closed"] == values.closed


def test_unarchived_positions_are_computed_exactly():
    space = ProjectSpace(DomainConfig("demo", cases=64, forms=400), 3)
    for start, stop in ((0, 400), (10, 300), (52, 53), (105, 107), (390, 400)):
        expected = [p for p in range(start, stop) if p % ARCHIVE_EVERY != ARCHIVE_EVERY - 1]
        selected = space.forms.unarchived(start, stop)
        assert len(selected) == len(expected) and [selected[k] for k in range(len(selected))] == expected


def test_configuration_is_checked():
    with pytest.raises(ValueError):
        DomainConfig("Bad Name")
    with pytest.raises(ValueError):
        DomainConfig("tiny", cases=3, forms=5)
    assert DomainConfig("tiny", cases=3).form_count == 0
    with pytest.raises(ValueError):
        FaultRule("explode", 0.5)
    with pytest.raises(ValueError):
        FaultRule("slow", 1.5)
    config = FaultConfig.from_json({"rates": {"slow": 0.5}, "scope": "forms", "slow_delay": 0.1})
    assert config.rules == (FaultRule("slow", 0.5, "forms"),) and config.slow_delay == 0.1
    demo = demo_config(cases=50)
    assert [d.name for d in demo.domains] == ["demo", "demo-other"]
    assert demo.users[0].domains == ("demo",) and demo.users[1].domains == ("demo-other",)


def test_generated_times_are_whole_milliseconds_in_a_sensible_order():
    space = ProjectSpace(DomainConfig("demo", cases=200, forms=150), 5)
    space.mutate(update_cases=20, new_cases=5, new_forms=10)
    for index in range(space.cases.n_total):
        indexed, server, phone, opened = space.cases.values(index, space.cases.states.get(index)).times
        assert opened <= phone <= server <= indexed
        assert all(t % 1000 == 0 for t in (indexed, server, phone, opened))
    for position in range(space.forms.positions):
        d = space.forms.describe(position)
        assert d.received <= d.server <= d.indexed and d.received % 1000 == 0 == d.indexed % 1000


def test_spellings_of_one_instant():
    us = 1_710_858_694_133_000  # 2024-03-19T14:31:34.133Z
    assert [spell(us, style) for style in range(9)] == [
        "2024-03-19T14:31:34.133000Z", "2024-03-19T14:31:34.133000+00:00", "2024-03-19T14:31:34.133000",
        "2024-03-19T14:31:34.133Z", "2024-03-19T14:31:34.133+00:00", "2024-03-19T14:31:34.133",
        "2024-03-19T14:31:34.133Z", "2024-03-19T14:31:34.133+00:00", "2024-03-19T14:31:34.133",
    ]
    assert spell(us - 133_000, 6) == "2024-03-19T14:31:34Z" and spell(us + 7, 3) == "2024-03-19T14:31:34.133007Z"


def test_commcare_date_formats_exactly():
    assert parse_commcare_date("2024-05-01") == parse_commcare_date("2024-05-01T00:00:00")
    assert parse_commcare_date("2024-05-01T10:00Z") == parse_commcare_date("2024-05-01T10:00:00.000")
    for bad in ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00+00:00", "2024-05-01T10:00", "2024-05-01 10:00:00"):
        with pytest.raises(ValueError):
            parse_commcare_date(bad)


def test_the_cli_sets_every_behaviour():
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = build_config(parser.parse_args([
        "--millisecond-order", "--mixed-timestamps", "--strict-form-dates", "--quota-domain", "30", "--quota-user", "5",
        "--public-base-url", "http://localhost:{port}",
    ]))
    assert config.behaviour == WireBehaviour(True, True, True, Quota(30, 5), "http://localhost:{port}")
    assert build_config(parser.parse_args([])).behaviour == WireBehaviour()
