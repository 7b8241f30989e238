"""How a stored timestamp is printed, as CommCare prints it. Pure.

Two of CommCare's ways, each a switch of ``WireBehaviour``:

- The search index keeps ``indexed_on`` at millisecond precision and sorts by
  that, but the API prints the stored value, which has microseconds. With
  ``millisecond_order`` a record's stored ``indexed_on`` is its place in the
  order (whole milliseconds) plus a sub-millisecond part drawn from its hash,
  so records that share a millisecond print values that go backwards.
- Older records print their timestamps in other spellings of the same instant:
  6, 3 or no fractional digits, ``Z``, ``+00:00`` or neither. With
  ``mixed_timestamps`` each record draws one spelling from its hash; a value
  that the spelling cannot hold exactly (3 digits for a value with
  microseconds) keeps the digits it needs.

Records of the base data marked *legacy* were stored at whole seconds, as old
records were: they print without microseconds whatever the switches.
"""

from __future__ import annotations

from data_explorer.simulator.synth import DAY_US, US, day_text, fmt_ts, hms_text

ZONES = ("Z", "+00:00", "")
DIGITS = (6, 3, 0)
STYLES = len(ZONES) * len(DIGITS)


def spell(us: int, style: int) -> str:
    """``us`` (microseconds since the epoch, UTC) in spelling ``style`` (0 .. STYLES-1); style 0 is CommCare's
    usual ``2024-03-19T14:31:34.133000Z``."""
    zone, digits = ZONES[style % len(ZONES)], DIGITS[style // len(ZONES)]
    days, rest = divmod(us, DAY_US)
    seconds, micros = divmod(rest, US)
    if digits == 0 and micros == 0:
        fraction = ""
    elif digits <= 3 and micros % 1000 == 0:
        fraction = f".{micros // 1000:03d}"
    else:
        fraction = f".{micros:06d}"
    return f"{day_text(days)}T{hms_text(seconds)}{fraction}{zone}"


def sub_millisecond(h: int) -> int:
    """The microseconds a stored ``indexed_on`` has beyond the millisecond the index keeps (0 .. 999)."""
    return (h >> 21) % 1000


def truncate_ms(us: int) -> int:
    """The millisecond the search index keeps of a value (it truncates, also the values of a filter)."""
    return us - us % 1000


class Printer:
    """The switches that decide how timestamps are printed."""

    __slots__ = ("millisecond_order", "mixed")

    def __init__(self, millisecond_order: bool = False, mixed: bool = False):
        self.millisecond_order, self.mixed = millisecond_order, mixed

    @property
    def plain(self) -> bool:
        """Every value printed as CommCare's usual spelling of itself."""
        return not (self.millisecond_order or self.mixed)

    def stored_indexed_on(self, key: int, h: int, legacy: bool) -> int:
        """The stored ``indexed_on`` of a record whose place in the order is ``key`` (whole milliseconds)."""
        return key + sub_millisecond(h) if self.millisecond_order and not legacy else key

    def text(self, us: int, h: int) -> str:
        return spell(us, (h >> 45) % STYLES) if self.mixed else fmt_ts(us)


PLAIN = Printer()
