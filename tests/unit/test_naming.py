import pytest

from data_explorer.warehouse.naming import InvalidDomain, TenantNames, schema_for_domain


@pytest.mark.parametrize(
    "domain, schema",
    [
        ("demo", "demo"),
        ("My-Project", "my_project"),
        ("a--b", "a_b"),
        ("2020-survey", "p_2020_survey"),
        ("pg-catalog", "t_pg_catalog"),
        ("x.y:z", "xyz"),
    ],
)
def test_schema_names_follow_the_rules(domain, schema):
    assert schema_for_domain(domain) == schema


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
