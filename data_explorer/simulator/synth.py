"""Deterministic primitives: 64-bit mixing, record ids, timestamps. Pure and fast.

Records are never stored: everything about record ``i`` derives from a hash of
(seed, domain, kind, i, version). Record ids are reversible, so a lookup by id
finds the index without any table: the first 64 bits of the 128-bit id are a
bijective mix of ``tag | index`` where ``tag`` names the seed, domain and kind.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime, timedelta, timezone

MASK64 = (1 << 64) - 1
INDEX_BITS = 40
INDEX_MASK = (1 << INDEX_BITS) - 1
_C1, _C2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_C1_INV, _C2_INV = pow(_C1, -1, 1 << 64), pow(_C2, -1, 1 << 64)
_SALT = 0x5DEECE66D2B7E151


def mix64(x: int) -> int:
    """SplitMix64's finaliser: a bijection of 64-bit integers that scatters every input bit."""
    x &= MASK64
    x = ((x ^ (x >> 30)) * _C1) & MASK64
    x = ((x ^ (x >> 27)) * _C2) & MASK64
    return x ^ (x >> 31)


def unmix64(y: int) -> int:
    """The inverse of ``mix64``."""
    x = y ^ (y >> 31) ^ (y >> 62)
    x = (x * _C2_INV) & MASK64
    x = x ^ (x >> 27) ^ (x >> 54)
    x = (x * _C1_INV) & MASK64
    return x ^ (x >> 30) ^ (x >> 60)


def sub_hash(h: int, salt: int) -> int:
    """A cheap hash derived from an already mixed ``h``: one multiply, good enough to pick values."""
    return (((h ^ salt) * 0x9E3779B97F4A7C15) & MASK64) >> 7


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of strings and numbers, the same in every process (unlike ``hash``)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def make_tag(seed: int, domain: str, kind: str) -> int:
    """High bits that name (seed, domain, kind) in record ids; the low INDEX_BITS are the index."""
    return stable_hash("tag", seed, domain, kind) & ~INDEX_MASK & MASK64


def _check_half(a: int) -> int:
    return ((a ^ _SALT) * 0xD6E8FEB86659FD93) & MASK64


def record_id(tag: int, index: int) -> str:
    """A UUID-shaped id, unique per (tag, index) and reversible with ``parse_id``."""
    a = mix64(tag | index)
    h = f"{a:016x}{((a ^ _SALT) * 0xD6E8FEB86659FD93) & MASK64:016x}"  # the second half checks the first
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def parse_id(value: str) -> tuple[int, int] | None:
    """(tag, index) of an id made by ``record_id``; None for anything else."""
    if not isinstance(value, str) or not _ID.match(value):
        return None
    digits = value.replace("-", "")
    a, b = int(digits[:16], 16), int(digits[16:], 16)
    if _check_half(a) != b:
        return None
    x = unmix64(a)
    return x & ~INDEX_MASK, x & INDEX_MASK


# --- time, as integer microseconds since the epoch (UTC); generated times are whole milliseconds -----

US = 1_000_000
DAY_US = 86_400 * US
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DAYS: dict[int, str] = {}


def _day(days: int) -> str:
    text = _DAYS.get(days)
    if text is None:
        text = _DAYS[days] = (date(1970, 1, 1) + timedelta(days=days)).isoformat()
    return text


_HMS = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)]
_MS = [f"{ms:03d}000Z" for ms in range(1000)]


def day_text(days: int) -> str:
    """``2024-03-19`` for a number of days since the epoch."""
    return _DAYS.get(days) or _day(days)


def hms_text(seconds: int) -> str:
    """``14:31:34`` for the seconds since midnight."""
    return _HMS[seconds]


def fmt_ts(us: int) -> str:
    """``2024-03-19T14:31:34.133000Z``: CommCare's timestamp form (whole milliseconds are the fast path)."""
    if us % 1000 == 0:
        days, ms = divmod(us // 1000, 86_400_000)
        return f"{_DAYS.get(days) or _day(days)}T{_HMS[ms // 1000]}.{_MS[ms % 1000]}"
    days, rest = divmod(us, DAY_US)
    seconds, micros = divmod(rest, US)
    return f"{_DAYS.get(days) or _day(days)}T{_HMS[seconds]}.{micros:06d}Z"


def fmt_naive(us: int) -> str:
    """``2024-03-19T14:31:34.133000``: a naive timestamp (app ``built_on``, case ``@date_modified``)."""
    return fmt_ts(us)[:-1]


def fmt_date(us: int) -> str:
    return _day(us // DAY_US)


def to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def date_us(day: date) -> int:
    return (day - date(1970, 1, 1)).days * DAY_US


def floor_second(us: int) -> int:
    return us - us % US
