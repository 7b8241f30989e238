import pytest

from data_explorer.warehouse.naming import InvalidDomain, TenantNames, schema_for_domain


@pytest.mark.parametrize(
    "domain, schema",
    [
        ("demo", "demo"),
        ("my-project", "my_project"),
        ("My-Project", "my_project_"),
        ("a--b", "a_b_"),
        ("2020-survey", "p_2020_survey_"),
        ("pg-catalog", "t_pg_catalog_"),
        ("x.y:z", "xyz_"),
    ],
)
def test_schema_names_follow_the_rules(domain, schema):
    derived = schema_for_domain(domain)
    if schema.endswith("_"):  # reduced: a hash of the domain keeps it one to one
        assert derived.startswith(schema) and len(derived) == len(schema) + 8
    else:
        assert derived == schema


def test_no_two_domains_share_a_schema():
    domains = ["a-b", "a_b", "A-B", "a--b", "a.b", "ab", "a-b-", "p-2020", "2020", "t-pg-x", "pg-x",
               "ministry-of-health-northern-region-malaria-program-2023",
               "ministry-of-health-northern-region-malaria-program-2024"]
    schemas = [schema_for_domain(d) for d in domains]
    assert len(set(schemas)) == len(schemas)


def test_companion_schemas_cannot_collide_with_any_tenant_schema():
    names = TenantNames.for_domain("demo", "de")
    for companion in (names.raw_schema, names.build_schema, names.old_schema):
        assert "__" in companion
    # no derived schema ever contains a double underscore
    for domain in ("demo--raw", "demo__raw", "demo-_-raw", "a_-_b"):
        assert "__" not in schema_for_domain(domain)


def test_long_domains_fit_postgres_identifiers():
    names = TenantNames.for_domain("a" * 80, "de")
    for name in (names.schema, names.build_schema, names.reader_role, names.writer_role):
        assert len(name.encode()) <= 63


@pytest.mark.parametrize("domain", ["", "-x", "a b", "a;drop", "é", "x" * 81, None, 5])
def test_bad_domains_are_refused_with_a_reason(domain):
    with pytest.raises(InvalidDomain, match="project space"):
        schema_for_domain(domain)


def test_tenant_lock_keys_are_64_bits_and_distinct():
    from data_explorer.warehouse.locks import lock_key

    keys = {lock_key(f"space-{n}") for n in range(20_000)}
    assert len(keys) == 20_000 and all(-(2**63) <= k < 2**63 for k in keys)
    assert any(abs(k) >= 2**32 for k in keys)  # not a 32-bit hash widened
