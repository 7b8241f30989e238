"""Names of a tenant's schemas and roles, derived from its domain. Pure.

A tenant's schema is the domain in lower case with ``-`` as ``_``, other
characters dropped, runs of ``_`` folded into one, and a prefix where it would
start with a digit; a hash keeps it one to one with the domain where that
reduction could merge two domains (see ``schema_for_domain``). Because a
derived name never contains ``__``, the private
companions ``<schema>__raw`` (loaded data and checkpoints), ``<schema>__build``
(the run being transformed) and ``<schema>__old`` (the previous run, during a
swap) can never collide with another tenant's schema. Names are only ever
quoted with ``psycopg.sql.Identifier``.

A domain whose plain name is one PostgreSQL or the product keeps for itself
(``public``, ``information_schema``, ``pg_*``, the control schema) is hashed
like any other irregular domain: project space ``public`` lives in
``public_<hash>``, never in ``public``. Schemas the database already has for
other purposes (an extension's, an application's) are not known here; the
provisioning refuses a tenant whose schema exists and is not its own.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

MAX_SCHEMA_LENGTH = 48  # leaves room for "__build" and role prefixes within PostgreSQL's 63 bytes
DEFAULT_CONTROL_SCHEMA = "data_explorer"
RESERVED_SCHEMAS = frozenset({"public", "information_schema"})  # and pg_*, and the control schema
_DOMAIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,79}$")


class InvalidDomain(ValueError):
    pass


def validate_domain(domain: str) -> str:
    """A CommCare domain as given by a user; raise InvalidDomain with what is wrong."""
    if not isinstance(domain, str) or not _DOMAIN_RE.match(domain):
        raise InvalidDomain(
            f"{domain!r} is not a CommCare project space name: use letters, digits and '-' "
            "(at most 80 characters, starting with a letter or digit)"
        )
    return domain


_PLAIN = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_HASH_CHARS = 8


def schema_for_domain(domain: str, control_schema: str = DEFAULT_CONTROL_SCHEMA) -> str:
    """The tenant's schema: one to one with the domain.

    A plain domain (lower-case letters, digits and single inner dashes, starting
    with a letter, short enough) maps to itself with ``-`` as ``_``; no plain
    domain contains ``_``, so that is reversible. Any other domain is reduced the
    same way and gets a hash of the whole domain, so that no two domains can ever
    share a schema (``a-b`` and ``A_B``, or two long names with one prefix); so
    does a plain one whose name is reserved (``public``, ``information-schema``,
    the control schema's).
    """
    validate_domain(domain)
    name = domain.lower().replace("-", "_")
    name = re.sub(r"[^a-z0-9_]", "", name)
    name = re.sub(r"_+", "_", name).strip("_")
    plain = bool(_PLAIN.match(domain)) and not domain.startswith("pg-") and len(name) <= MAX_SCHEMA_LENGTH
    if plain and not reserved(name, control_schema):
        return name
    return _hashed(domain, name)


def reserved_note(domain: str, control_schema: str = DEFAULT_CONTROL_SCHEMA) -> str | None:
    """Why a plain domain's schema is not its plain name, when a reserved name is the reason."""
    name = domain.lower().replace("-", "_")
    if _PLAIN.match(domain) and reserved(name, control_schema):
        schema = schema_for_domain(domain, control_schema)
        return f"project space {domain!r} is kept in schema {schema!r}: {name!r} is reserved for PostgreSQL or Data Explorer"
    return None


def _hashed(domain: str, name: str) -> str:
    if not name or name[0].isdigit():
        name = "p_" + name
    if name.startswith("pg_"):
        name = "t_" + name  # pg_ is reserved for system schemas
    digest = hashlib.sha256(domain.encode()).hexdigest()[:_HASH_CHARS]
    return f"{name[:MAX_SCHEMA_LENGTH - _HASH_CHARS - 1].rstrip('_')}_{digest}"


def reserved(schema: str, control_schema: str) -> bool:
    """Whether a schema name belongs to PostgreSQL or to the product, never to a tenant."""
    return schema in RESERVED_SCHEMAS or schema.startswith("pg_") or schema == control_schema


@dataclass(frozen=True)
class TenantNames:
    domain: str
    schema: str
    raw_schema: str
    build_schema: str
    old_schema: str
    reader_role: str
    writer_role: str

    @classmethod
    def for_domain(cls, domain: str, role_prefix: str, control_schema: str = DEFAULT_CONTROL_SCHEMA) -> "TenantNames":
        schema = schema_for_domain(domain, control_schema)
        names = cls(
            domain=domain,
            schema=schema,
            raw_schema=f"{schema}__raw",
            build_schema=f"{schema}__build",
            old_schema=f"{schema}__old",
            reader_role=f"{role_prefix}_{schema}_reader",
            writer_role=f"{role_prefix}_{schema}_writer",
        )
        # PostgreSQL cuts longer names silently, which could merge the two roles.
        for name in (names.build_schema, names.reader_role, names.writer_role):
            if len(name.encode()) > 63:
                raise InvalidDomain(f"{name!r} is longer than PostgreSQL's 63 bytes: use a shorter role prefix")
        return names
