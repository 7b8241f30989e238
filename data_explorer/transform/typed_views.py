"""Plans the typed view of each case type: its name, and a column per property. Pure.

Names are derived, never copied: a case type or property can contain anything,
so view and column names are reduced to ``[a-z0-9_]`` and made unique, and the
original names travel only as data (rows read by the dbt macro, comments set
with bound literals), never as SQL or template text.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

# Columns every typed view starts with; properties that would clash get a prefix.
BASE_COLUMNS = (
    "case_id", "case_name", "owner_id", "parent_case_id", "host_case_id",
    "date_opened", "last_modified", "closed", "date_closed",
)
# CommCare question types to the column types of the typed views.
QUESTION_TYPES = {
    "Int": "bigint", "Long": "bigint", "Double": "numeric", "Decimal": "numeric",
    "Date": "date", "DateTime": "timestamptz",
}
MAX_IDENTIFIER = 63
DEFINITION_COLUMNS = ("case_type", "view_name", "apps", "modules")
PROPERTY_COLUMNS = ("case_type", "property", "column_name", "data_type", "label", "question")


def identifier(name: str, fallback: str) -> str:
    """A lower-case identifier of letters, digits and underscores; never empty, never digit-first."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()  # "Präsenz" -> "Prasenz"
    text = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")
    if not text:
        text = fallback
    if text[0].isdigit():
        text = "_" + text
    return text[:MAX_IDENTIFIER - 8]


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate = f"{name}_{n}"
        n += 1
    taken.add(candidate)
    return candidate


def plan_typed_views(metadata: dict[str, Any], prefix: str, reserved: set[str]) -> tuple[list[tuple], list[tuple]]:
    """Rows for case_type_definitions and case_type_properties.

    ``reserved`` holds the names of the pipeline's own models, which views must not take.
    """
    taken = set(reserved)
    definitions, properties = [], []
    for index, (case_type, entry) in enumerate(sorted(metadata["case_types"].items())):
        view = _unique(prefix + identifier(case_type, f"type_{index}"), taken)
        definitions.append(
            (case_type, view, json.dumps(entry["apps"], ensure_ascii=False), json.dumps(entry["modules"], ensure_ascii=False))
        )
        columns = set(BASE_COLUMNS)
        for p_index, (prop, info) in enumerate(sorted(entry["properties"].items())):
            column = identifier(prop, f"property_{p_index}")
            if column in BASE_COLUMNS:
                column = "p_" + column
            column = _unique(column, columns)
            data_type = QUESTION_TYPES.get(info.get("type") or "", "text")
            properties.append((case_type, prop, column, data_type, info.get("label"), info.get("question")))
    return definitions, properties
