import pytest

from data_explorer.config import SettingsError, load_settings


def test_defaults_and_environment(tmp_path):
    s = load_settings({"DATA_EXPLORER_HOME": str(tmp_path)})
    assert s.home == tmp_path
    assert s.database_url is None
    assert s.control_schema == "data_explorer"
    s = load_settings({"DATA_EXPLORER_HOME": str(tmp_path), "COMMCARE_CASE_PAGE_SIZE": "100"})
    assert s["COMMCARE_CASE_PAGE_SIZE"] == 100


@pytest.mark.parametrize(
    "env, name",
    [
        ({"COMMCARE_BASE_URL": "ftp://x"}, "COMMCARE_BASE_URL"),
        ({"COMMCARE_BASE_URL": "not a url"}, "COMMCARE_BASE_URL"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"COMMCARE_CASE_PAGE_SIZE": "5001"}, "COMMCARE_CASE_PAGE_SIZE"),
        ({"COMMCARE_CASE_PAGE_SIZE": "many"}, "COMMCARE_CASE_PAGE_SIZE"),
        ({"DATA_EXPLORER_CONTROL_SCHEMA": "Bad-Name"}, "DATA_EXPLORER_CONTROL_SCHEMA"),
        ({"COMMCARE_HTTP_TIMEOUT": "-1"}, "COMMCARE_HTTP_TIMEOUT"),
    ],
)
def test_malformed_settings_name_themselves(tmp_path, env, name):
    with pytest.raises(SettingsError) as err:
        load_settings({"DATA_EXPLORER_HOME": str(tmp_path), **env})
    assert name in str(err.value)
    assert "environment" in str(err.value)


def test_secret_values_are_not_echoed(tmp_path):
    with pytest.raises(SettingsError) as err:
        load_settings({"DATA_EXPLORER_HOME": str(tmp_path), "DATABASE_URL": "mysql://user:hunter2@x"})
    assert "hunter2" not in str(err.value)


def test_missing_commcare_settings_name_what_to_set(tmp_path):
    s = load_settings({"DATA_EXPLORER_HOME": str(tmp_path)})
    with pytest.raises(SettingsError, match="COMMCARE_BASE_URL"):
        s.require_commcare()
    s = load_settings({"DATA_EXPLORER_HOME": str(tmp_path), "COMMCARE_BASE_URL": "https://cc.example.org"})
    with pytest.raises(SettingsError, match="COMMCARE_API_KEY"):
        s.require_commcare()
    s = load_settings({"DATA_EXPLORER_HOME": str(tmp_path), "COMMCARE_BASE_URL": "https://cc.example.org", "COMMCARE_API_KEY": "k"})
    with pytest.raises(SettingsError, match="COMMCARE_USERNAME"):
        s.require_commcare()
    s = load_settings({"DATA_EXPLORER_HOME": str(tmp_path), "COMMCARE_BASE_URL": "https://cc.example.org/", "COMMCARE_OAUTH_TOKEN": "t"})
    assert s.require_commcare().base_url == "https://cc.example.org"


def test_config_file_then_environment(tmp_path):
    (tmp_path / "config.toml").write_text('commcare_base_url = "https://file.example.org"\ncommcare_case_page_size = 50\n')
    s = load_settings({"DATA_EXPLORER_HOME": str(tmp_path)})
    assert s["COMMCARE_BASE_URL"] == "https://file.example.org"
    assert s["COMMCARE_CASE_PAGE_SIZE"] == 50
    s = load_settings({"DATA_EXPLORER_HOME": str(tmp_path), "COMMCARE_CASE_PAGE_SIZE": "60"})
    assert s["COMMCARE_CASE_PAGE_SIZE"] == 60


@pytest.mark.parametrize(
    "content, expected",
    [
        ("commcare_base_urll = 'x'\n", "unknown key 'commcare_base_urll'"),
        ("commcare_base_url = \n", "not valid TOML"),
        ("commcare_case_page_size = 0\n", "COMMCARE_CASE_PAGE_SIZE"),
    ],
)
def test_bad_config_file_is_named(tmp_path, content, expected):
    path = tmp_path / "config.toml"
    path.write_text(content)
    with pytest.raises(SettingsError) as err:
        load_settings({"DATA_EXPLORER_HOME": str(tmp_path)})
    assert expected in str(err.value)
    assert "config" in str(err.value)


def test_the_configuration_doc_lists_every_setting():
    from pathlib import Path

    from data_explorer.config import SETTINGS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for setting in SETTINGS:
        assert f"| `{setting.env}` | {setting.help} |" in doc, setting.env


import pytest as _pytest  # noqa: E402


@_pytest.mark.parametrize("env, value, words", [
    ("DATA_EXPLORER_CONTROL_PLANE", "cloud", "local, kubernetes"),
    ("DATA_EXPLORER_NAMESPACE", "Not_A_Name", "Kubernetes name"),
    ("DATA_EXPLORER_RUNNER_MEMORY", "lots", "quantity"),
    ("DATA_EXPLORER_EGRESS_PROXY_LABELS", "app", "key=value"),
    ("DATA_EXPLORER_POSTGRES_CIDRS", "10.0.0.0/8,nowhere", "'nowhere' is not a CIDR"),
    ("DATA_EXPLORER_RUNNER_IMAGE", "has spaces:1", "image reference"),
])
def test_kubernetes_settings_are_checked_by_name(tmp_path, env, value, words):
    from data_explorer.config import SettingsError, load_settings

    with _pytest.raises(SettingsError) as err:
        load_settings({"DATA_EXPLORER_HOME": str(tmp_path), env: value})
    assert env in str(err.value) and words in str(err.value)


def test_kubernetes_settings_parse():
    from data_explorer.config import load_settings

    settings = load_settings({"DATA_EXPLORER_EGRESS_PROXY_LABELS": "app.kubernetes.io/component=egress-proxy, tier=edge",
                              "DATA_EXPLORER_POSTGRES_CIDRS": "10.0.0.5, 10.1.0.0/16"})
    assert settings["DATA_EXPLORER_EGRESS_PROXY_LABELS"] == {"app.kubernetes.io/component": "egress-proxy", "tier": "edge"}
    assert settings["DATA_EXPLORER_POSTGRES_CIDRS"] == ("10.0.0.5/32", "10.1.0.0/16")
    assert settings["DATA_EXPLORER_CONTROL_PLANE"] == "local"
