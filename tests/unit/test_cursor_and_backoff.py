import random
from datetime import datetime, timedelta, timezone

from data_explorer.loaders.commcare.client import QUOTA_WINDOW, parse_retry_after, retry_delay, waiting_message
from data_explorer.loaders.errors import RateLimited, TransientError
from data_explorer.loaders.cursor import IndexedOnCursor
from data_explorer.warehouse.batches import dedupe_last
from data_explorer.warehouse.checkpoints import Checkpoint, start_pass

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def test_cursor_skips_only_what_it_took_at_its_mark():
    c = IndexedOnCursor()
    assert c.accept(T0, "a")
    assert c.accept(T0, "b")  # same instant, new id
    assert not c.accept(T0, "a")  # repeated at the page boundary
    assert c.accept(T0 - timedelta(seconds=1), "z")  # older than the mark (indexed late): never dropped
    assert c.accept(T0 - timedelta(microseconds=1), "a")  # printed out of order within a millisecond
    assert c.instant == T0 and c.ids == {"a", "b"}  # an older record moves nothing
    assert c.accept(T0 + timedelta(microseconds=1), "a")  # updated later: a new version
    restored = IndexedOnCursor(c.state())
    assert not restored.accept(T0 + timedelta(microseconds=1), "a")
    assert restored.accept(T0 + timedelta(microseconds=1), "c")


def test_the_next_pass_starts_a_window_behind_the_mark_at_millisecond_precision():
    c = IndexedOnCursor({"indexed_on": (T0 + timedelta(microseconds=123_456)).isoformat(), "ids": ["a"]})
    assert c.since(timedelta(0)) == T0 + timedelta(milliseconds=123)
    assert c.since(timedelta(hours=1)) == T0 + timedelta(milliseconds=123) - timedelta(hours=1)
    assert IndexedOnCursor().since(timedelta(hours=1)) is None


def test_backoff_honours_retry_after_and_grows_otherwise():
    rng = random.Random(1)
    assert retry_delay(0, RateLimited("429", 3.0), 8, 300, rng) == 3.0
    assert retry_delay(0, RateLimited("429", 3000.0), 8, 300, rng) == 3000.0  # bounded by the caller, not here
    assert retry_delay(0, RateLimited("429", 7.0), 8, 0.05, rng) == 7.0  # a named wait is not cut to the backoff cap
    server_errors = [retry_delay(n, TransientError("503"), 12, 300, rng) for n in range(12)]
    assert all(0.5 * min(300, 2**n) <= d <= min(300, 2**n) for n, d in enumerate(server_errors))
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") <= 0.0001


def test_a_bare_429_is_retried_across_a_per_minute_quota_whatever_the_retry_count():
    for retries in (1, 2, 3, 5, 8, 20, 50):
        rng = random.Random(retries)
        waits = [retry_delay(n, RateLimited("429"), retries, 300, rng) for n in range(retries)]
        assert sum(waits) >= QUOTA_WINDOW, (retries, waits)
    rng = random.Random(2)
    assert retry_delay(0, RateLimited("429"), 8, 0.05, rng) == 0.05  # COMMCARE_MAX_BACKOFF still bounds it
    assert retry_delay(0, TransientError("503"), 8, 300, rng) <= 1.0  # only a quota waits that long


def test_the_waiting_message_says_why_and_for_how_long():
    said = waiting_message(41.2, RateLimited("429", 42.0), "Case API v2", 1, 8)
    assert said == "waiting 42 s: CommCare's rate limit for this project space (Case API v2, retry 1 of 8)"
    said = waiting_message(0.25, TransientError("server error (HTTP 503)"), "Form API v0.5", 3, 8)
    assert said == "waiting 0.2 s: server error (HTTP 503) (Form API v0.5, retry 3 of 8)"


def test_dedupe_keeps_the_last_version():
    rows = [("a", 1), ("b", 1), ("a", 2)]
    assert dedupe_last(rows, [0]) == [("b", 1), ("a", 2)]


def test_passes_resume_continue_or_restart():
    first = start_pass(None, "cases", full=False)
    assert first.full_pending and first.generation == 1 and first.cursor is None
    interrupted = Checkpoint("cases", 1, True, {"indexed_on": "x"}, 10)
    assert start_pass(interrupted, "cases", full=False) == interrupted
    assert start_pass(interrupted, "cases", full=True) == interrupted  # finish the pass first
    done = Checkpoint("cases", 1, False, {"indexed_on": "x"}, 10)
    incremental = start_pass(done, "cases", full=False)
    assert not incremental.full_pending and incremental.cursor == done.cursor and incremental.generation == 1
    refresh = start_pass(done, "cases", full=True)
    assert refresh.full_pending and refresh.cursor is None and refresh.generation == 2


def test_unstorable_characters_are_replaced_and_counted():
    import json

    from data_explorer.warehouse.storable import storable, storable_rows

    assert storable({"a\x00": ["x\ud800y", 1, None]}) == ({"a\ufffd": ["x\ufffdy", 1, None]}, 2)
    rows, n = storable_rows([("id\x00", json.dumps({"p": "\x00"}), 5)], ["text", "jsonb", "integer"])
    assert n == 2 and rows == [("id\ufffd", json.dumps({"p": "\ufffd"}, ensure_ascii=False), 5)]
    assert storable_rows([("plain", "{}")], ["text", "jsonb"]) == ([("plain", "{}")], 0)
