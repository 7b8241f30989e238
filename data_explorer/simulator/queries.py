"""Request parameters, parsed and checked as CommCare checks them. Pure: no data, no I/O.

Every value is untrusted; anything CommCare would refuse becomes an
``ApiError`` with CommCare's status and message, never an exception that
escapes as a 500.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from urllib.parse import parse_qsl, urlencode

from data_explorer.simulator.stamps import truncate_ms
from data_explorer.simulator.synth import DAY_US, date_us, to_us

CASE_DEFAULT_LIMIT, CASE_MAX_LIMIT = 20, 5000
FORM_DEFAULT_LIMIT, FORM_MAX_LIMIT = 20, 1000
FALSE_STRINGS = ("false", "f", "no", "n", "off", "0")
CASE_SIMPLE = ("external_id", "case_type", "owner_id", "case_name", "closed", "include_deprecated")
CASE_DATES = ("last_modified", "server_last_modified", "date_opened", "date_closed", "indexed_on")
RANGES = ("gt", "gte", "lt", "lte")
ORDER_FIELDS = {"received_on": 0, "indexed_on": 1, "server_modified_on": 2}


class ApiError(Exception):
    """An answer other than 200: status, body and content type."""

    def __init__(self, status: int, body: bytes = b"", content_type: str = "application/json"):
        super().__init__(status, body[:200])
        self.status, self.body, self.content_type = status, body, content_type


def error(status: int, message: str) -> ApiError:
    return ApiError(status, json.dumps({"error": message}).encode())


def bad_request(message: str) -> ApiError:
    return error(400, message)


def query_pairs(query_string: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(query_string.decode("utf-8"), keep_blank_values=True, max_num_fields=1000)
    except (UnicodeDecodeError, ValueError):
        raise bad_request("The query string could not be read.") from None


def to_boolean(value: str) -> bool:
    return not (value == "" or value.lower() in FALSE_STRINGS)


# --- dates -------------------------------------------------------------------------------------


def parse_lenient(value: str) -> tuple[int, bool]:
    """(microseconds, date only) of a Case API v2 date filter value; ValueError when unreadable."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return date_us(date.fromisoformat(value)), True
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ][0-9:.,+\-Z]+", value):
        raise ValueError(value)
    try:
        moment = datetime.fromisoformat(value)
        return to_us(moment.astimezone(timezone.utc) if moment.tzinfo is not None else moment), False
    except OverflowError:  # an offset that pushes the instant out of datetime's range
        raise ValueError(value) from None


_FORM_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?Z?)?")


def parse_strict(value: str, end: bool) -> int:
    """Microseconds of a Form API date parameter; a date alone ends at the end of its day when ``end``.

    Accepted: ``YYYY-MM-DD``, ``YYYY-MM-DDTHH:MM:SS[.ffffff]`` and ``YYYY-MM-DDTHH:MM``, with an optional
    ``Z``; an explicit offset such as ``+00:00`` is refused, as CommCare refuses it.
    """
    if not _FORM_DATE.fullmatch(value):
        raise ValueError(value)
    if len(value) == 10:
        return date_us(date.fromisoformat(value)) + (DAY_US - 1 if end else 0)
    return to_us(datetime.fromisoformat(value.rstrip("Z")))


COMMCARE_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%MZ")


def parse_commcare_date(value: str) -> int:
    """Microseconds of a Form API date parameter read exactly as CommCare reads it (``validate_date`` in
    ``corehq/apps/api/es.py``): the first of its four formats that ``strptime`` takes; a date alone is its
    midnight, for an end too. ValueError otherwise."""
    for pattern in COMMCARE_DATE_FORMATS:
        try:
            return to_us(datetime.strptime(value, pattern))
        except ValueError:
            pass
    raise ValueError(value)


# --- Case API v2 -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseFilter:
    key: str  # the parameter name, e.g. "case_type", "properties.dob", "indexed_on.gte"
    values: tuple[str, ...]  # repeated keys: any of them matches
    moments: tuple[tuple[int, bool], ...] = ()  # parsed values of a date range filter


@dataclass(frozen=True)
class CaseQuery:
    limit: int
    params: tuple[tuple[str, str], ...]  # the parameters a cursor carries on
    filters: tuple[CaseFilter, ...]
    after: tuple[int, str] | None = None  # (indexed_on, case_id) of the last case already served
    after_text: str | None = None


def parse_case_query(pairs: list[tuple[str, str]], millisecond: bool = False) -> CaseQuery:
    """The query of a Case API v2 list request; with ``millisecond`` its instants (filters and the cursor's
    position) are truncated to the millisecond, as the search index compares them."""
    after = after_text = None
    cursors = [v for k, v in pairs if k == "cursor"]
    if cursors:
        pairs = _decode_cursor(cursors[0])
        last_date = next((v for k, v in pairs if k == "indexed_on.gte"), None)
        last_id = next((v for k, v in pairs if k == "last_case_id"), "")
        pairs = [(k, v) for k, v in pairs if k not in ("indexed_on.gte", "last_case_id")]
        if last_date is not None:
            try:
                moment = parse_lenient(last_date)[0]
                after, after_text = (truncate_ms(moment) if millisecond else moment, last_id), last_date
            except ValueError:
                raise bad_request(f"Cannot parse datetime '{last_date}'") from None
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    limit = CASE_DEFAULT_LIMIT
    if "limit" in grouped:
        raw_limit = grouped["limit"][-1]
        try:
            limit = int(raw_limit)
        except ValueError:
            raise bad_request(f"'{raw_limit}' is not a valid value for 'limit'") from None
        if limit < 0:
            raise bad_request(f"'{raw_limit}' is not a valid value for 'limit'")
        if limit > CASE_MAX_LIMIT:
            raise bad_request(f"You cannot request more than {CASE_MAX_LIMIT} cases per request.")
    filters = []
    for key, values in grouped.items():
        if key == "limit":
            continue
        filters.append(_case_filter(key, tuple(values), millisecond))
    return CaseQuery(limit, tuple(pairs), tuple(filters), after, after_text)


def _case_filter(key: str, values: tuple[str, ...], millisecond: bool = False) -> CaseFilter:
    if key in CASE_SIMPLE:
        return CaseFilter(key, values)
    prefix, dot, qualifier = key.partition(".")
    if dot and prefix in ("properties", "indices"):
        return CaseFilter(key, values)
    if dot and prefix in CASE_DATES:
        if qualifier not in RANGES:
            raise bad_request(f"'{qualifier}' is not a valid type of date range.")
        moments = []
        for value in values:
            try:
                moment, date_only = parse_lenient(value)
            except ValueError:
                raise bad_request(f"Cannot parse datetime '{value}'") from None
            moments.append((truncate_ms(moment) if millisecond else moment, date_only))
        return CaseFilter(key, values, tuple(moments))
    raise bad_request(f"'{key}' is not a valid parameter.")


def _decode_cursor(cursor: str) -> list[tuple[str, str]]:
    try:
        # a '+' left unescaped in a query string arrives as a space
        text = base64.b64decode(cursor.replace(" ", "+").encode("ascii"), validate=True).decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, max_num_fields=1000)
    except (binascii.Error, UnicodeError, ValueError):
        raise bad_request("Invalid cursor.") from None


def encode_cursor(params: tuple[tuple[str, str], ...], last_indexed_on: str, last_case_id: str) -> str:
    """base64 of the url-encoded parameters, with ``indexed_on.gte`` and ``last_case_id`` set to the last case."""
    kept = [(k, v) for k, v in params if k not in ("indexed_on.gte", "last_case_id")]
    kept += [("indexed_on.gte", last_indexed_on), ("last_case_id", last_case_id)]
    return base64.b64encode(urlencode(kept).encode("utf-8")).decode("ascii")


def parse_case_ids(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


# --- tastypie resources ------------------------------------------------------------------------


def parse_paging(pairs: list[tuple[str, str]], default: int, maximum: int) -> tuple[int, int]:
    """(limit, offset) as tastypie reads them: limit 0 or above the maximum means the maximum."""
    params = dict(pairs)
    raw_limit, raw_offset = params.get("limit", str(default)), params.get("offset", "0")
    try:
        limit = int(raw_limit)
    except ValueError:
        raise bad_request(f"Invalid limit '{raw_limit}' provided. Please provide a positive integer.") from None
    if limit < 0:
        raise bad_request(f"Invalid limit '{raw_limit}' provided. Please provide a positive integer >= 0.")
    try:
        offset = int(raw_offset)
    except ValueError:
        raise bad_request(f"Invalid offset '{raw_offset}' provided. Please provide an integer.") from None
    if offset < 0:
        raise bad_request(f"Invalid offset '{raw_offset}' provided. Please provide a positive integer >= 0.")
    return (maximum if limit == 0 or limit > maximum else limit), offset


@dataclass(frozen=True)
class FormQuery:
    limit: int
    offset: int
    order_field: int  # 0 received_on, 1 indexed_on, 2 server_modified_on
    descending: bool
    bounds: tuple[tuple[int, str, int], ...] = ()  # (field, "start" or "end", microseconds), both inclusive
    xmlns: str | None = None
    app_id: str | None = None
    case_id: str | None = None
    include_archived: bool = False
    pairs: tuple[tuple[str, str], ...] = field(default=())


def parse_form_query(pairs: list[tuple[str, str]], strict_dates: bool = False, millisecond: bool = False) -> FormQuery:
    """The query of a Form API list request. ``strict_dates``: date parameters exactly as CommCare reads them;
    ``millisecond``: their instants truncated to the millisecond, as the search index compares them."""
    limit, offset = parse_paging(pairs, FORM_DEFAULT_LIMIT, FORM_MAX_LIMIT)
    params = dict(pairs)
    order = params.get("order_by", "-received_on")
    name = order[1:] if order.startswith("-") else order
    if name not in ORDER_FIELDS:
        raise bad_request(f"No matching '{name}' field for ordering on.")
    bounds = []
    for prefix, fld in (("received_on", 0), ("indexed_on", 1)):
        for side in ("start", "end"):
            value = params.get(f"{prefix}_{side}")
            if value is None or (strict_dates and value == ""):  # CommCare skips an empty one
                continue
            try:
                moment = parse_commcare_date(value) if strict_dates else parse_strict(value, end=side == "end")
            except ValueError:
                if strict_dates:  # tastypie's answer to CommCare's Http400, its text HTML-escaped
                    raise error(400, f"Bad query parameter: Unknown date format: {html.escape(value)}") from None
                raise bad_request(
                    f"Invalid {prefix}_{side} '{value}': use YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS[.ffffff] "
                    "or YYYY-MM-DDTHH:MMZ, in UTC without an offset."
                ) from None
            bounds.append((fld, side, truncate_ms(moment) if millisecond else moment))
    return FormQuery(
        limit, offset, ORDER_FIELDS[name], order.startswith("-"), tuple(bounds),
        params.get("xmlns"), params.get("app_id"), params.get("case_id"), "include_archived" in params, tuple(pairs),
    )
