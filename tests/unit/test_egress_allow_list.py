"""The egress proxy's allow-list: parsing entries and deciding targets, without any I/O."""

import pytest

from data_explorer.egress_proxy import (
    DEFAULT_PORTS,
    AllowList,
    AllowListError,
    is_private_address,
    parse_allow_list,
    parse_ports,
)


def test_exact_names_match_case_insensitively_and_only_exactly():
    allow = parse_allow_list("www.CommCareHQ.org")
    assert allow.hosts == {"www.commcarehq.org"}
    assert allow.permits("www.commcarehq.org", 443) == (True, "www.commcarehq.org is on the allow-list")
    assert allow.permits("WWW.COMMCAREHQ.ORG", 443)[0]
    assert allow.permits("www.commcarehq.org.", 443)[0]  # a fully qualified name is the same host
    for other in ("commcarehq.org", "api.www.commcarehq.org", "www.commcarehq.org.evil.com", "wwwcommcarehq.org"):
        assert allow.permits(other, 443) == (False, f"{other} is not on the allow-list")


def test_a_wildcard_allows_subdomains_at_any_depth_but_not_the_domain_itself():
    allow = parse_allow_list("*.commcarehq.org")
    assert allow.wildcards == {"commcarehq.org"}
    assert allow.permits("india.commcarehq.org", 443) == (True, "india.commcarehq.org matches *.commcarehq.org on the allow-list")
    assert allow.permits("a.b.CommCareHQ.org", 80)[0]
    assert not allow.permits("commcarehq.org", 443)[0]
    assert not allow.permits("evilcommcarehq.org", 443)[0]
    assert not allow.permits("commcarehq.org.evil.com", 443)[0]


def test_both_the_domain_and_its_subdomains_when_both_are_listed():
    allow = parse_allow_list("commcarehq.org, *.commcarehq.org")
    assert allow.permits("commcarehq.org", 443)[0] and allow.permits("www.commcarehq.org", 443)[0]


def test_entries_are_separated_by_commas_or_lines():
    allow = parse_allow_list("a.example.org,b.example.org\n*.c.example.org\r\nd.example.org\n")
    assert allow.hosts == {"a.example.org", "b.example.org", "d.example.org"}
    assert allow.wildcards == {"c.example.org"}


def test_ports_are_checked_after_the_host():
    allow = parse_allow_list("www.commcarehq.org")
    assert allow.ports == set(DEFAULT_PORTS) == {443, 80}
    assert allow.permits("www.commcarehq.org", 80)[0]
    ok, reason = allow.permits("www.commcarehq.org", 8443)
    assert not ok and reason == "port 8443 of www.commcarehq.org is not allowed (allowed ports: 80, 443)"
    # a refused host is named as such whatever the port
    assert allow.permits("evil.example.com", 8443) == (False, "evil.example.com is not on the allow-list")
    custom = parse_allow_list("www.commcarehq.org", ports="8443, 443")
    assert custom.ports == {443, 8443}
    assert custom.permits("www.commcarehq.org", 8443)[0] and not custom.permits("www.commcarehq.org", 80)[0]


def test_ip_literal_targets_are_refused_unless_listed():
    allow = parse_allow_list("www.commcarehq.org")
    ok, reason = allow.permits("203.0.113.7", 443)
    assert not ok and "203.0.113.7 is an IP address that is not on the allow-list" in reason
    assert not allow.permits("[2001:db8::1]", 443)[0]

    listed = parse_allow_list("203.0.113.7, [2001:DB8::1], *.example.org")
    assert listed.addresses == {"203.0.113.7", "2001:db8::1"}
    assert listed.permits("203.0.113.7", 443)[0]
    assert listed.permits("2001:db8:0::1", 443)[0]
    assert listed.permits("[2001:db8::1]", 443)[0]
    assert not listed.permits("203.0.113.8", 443)[0]


def test_numeric_names_that_resolvers_read_as_addresses_are_not_host_names():
    allow = parse_allow_list("*.example.org")
    for sneaky in ("127.1", "2130706433", "0x7f.1"):
        assert not allow.permits(sneaky, 80)[0]


def test_invalid_target_names_are_refused():
    allow = parse_allow_list("*.example.org")
    for bad in ("", "a b.example.org", "-a.example.org", "a..example.org", "é.example.org", "a_b.example.org",
                "x" * 64 + ".example.org"):
        ok, reason = allow.permits(bad, 443)
        assert not ok and "not a valid host name" in reason


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "the allow-list is empty"),
        ("   \n", "the allow-list is empty"),
        ("a.example.org,,b.example.org", "empty entry"),
        ("a.example.org, ,b.example.org", "empty entry"),
        ("a.example.org,", "empty entry"),
        ("https://www.commcarehq.org", "is a URL; give the host name only (e.g. 'www.commcarehq.org')"),
        ("http://user@www.commcarehq.org/a/demo", "e.g. 'www.commcarehq.org'"),
        ("www.commcarehq .org", "contains whitespace"),
        ("www.commcarehq.org/a", "without path or user"),
        ("www.commcarehq.org:443", "without a port"),
        ("*", "wildcard is allowed only as a leading '*.'"),
        ("*.*.example.org", "wildcard is allowed only as a leading '*.'"),
        ("www.*.example.org", "wildcard is allowed only as a leading '*.'"),
        ("*.org", "too broad"),
        ("-bad.example.org", "not a valid host name"),
        ("bücher.example", "not ASCII"),
    ],
)
def test_bad_entries_are_rejected_with_a_clear_message(text, message):
    with pytest.raises(AllowListError) as caught:
        parse_allow_list(text)
    assert message in str(caught.value)


@pytest.mark.parametrize("text", ["", "0", "65536", "80,", "http", "-1", "80;443"])
def test_bad_ports_are_rejected(text):
    with pytest.raises(AllowListError):
        parse_ports(text)


def test_ports_parse():
    assert parse_ports("443") == {443}
    assert parse_ports(" 443 , 80,8443") == {80, 443, 8443}
    with pytest.raises(AllowListError):
        parse_allow_list("a.example.org", ports=[0])
    with pytest.raises(AllowListError):
        parse_allow_list("a.example.org", ports=[])


def test_the_default_allow_list_allows_nothing():
    nothing = AllowList()
    assert not nothing.permits("www.commcarehq.org", 443)[0]
    assert not nothing.permits("127.0.0.1", 443)[0]


@pytest.mark.parametrize(
    "address, private",
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),  # cloud metadata
        ("100.64.0.1", True),  # carrier-grade NAT, used by some cluster networks
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("fd00::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:10.0.0.1", True),
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
        ("::ffff:8.8.8.8", False),
    ],
)
def test_private_addresses(address, private):
    assert is_private_address(address) is private
