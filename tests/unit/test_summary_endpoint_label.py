"""A table's label in every summary and report (``table @ region @ endpoint``) names the endpoint
the client really uses, however it was set: ``--endpoint-url``, AWS_ENDPOINT_URL_DYNAMODB,
AWS_ENDPOINT_URL, or a profile's ``endpoint_url`` in the AWS config file. Before, only the option
was shown: a copy into DynamoDB Local set by the environment read "table T", as one into AWS."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddbmigrate.config import TableRef, configured_location


@pytest.fixture(autouse=True)
def aws_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An AWS config file of the test's own (never the machine's), and no endpoint variables."""
    config = tmp_path / "config"
    config.write_text("[default]\nregion = eu-west-1\n\n"
                      "[profile local]\nregion = eu-central-1\nendpoint_url = http://127.0.0.1:8111\n\n"
                      "[profile services]\nservices = local-ddb\n\n"
                      "[services local-ddb]\ndynamodb =\n  endpoint_url = http://127.0.0.1:8222\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
                "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    return config


def test_the_option_is_shown_as_before() -> None:
    assert TableRef("Orders", region="us-east-1", endpoint_url="http://h:1").describe() == \
        "Orders @ us-east-1 @ http://h:1"


@pytest.mark.parametrize("var", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"])
def test_an_endpoint_from_the_environment_is_shown(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    monkeypatch.setenv(var, "http://localhost:8000")
    assert TableRef("Orders").describe() == "Orders @ eu-west-1 @ http://localhost:8000"


def test_the_dynamodb_variable_wins_over_the_global_one_as_in_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://global:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://ddb:2")
    assert TableRef("Orders").describe().endswith("@ http://ddb:2")
    # The option wins over both.
    assert TableRef("Orders", endpoint_url="http://opt:3").describe().endswith("@ http://opt:3")


def test_a_profiles_endpoint_and_region_are_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TableRef("Orders", profile="local").describe() == "Orders @ eu-central-1 @ http://127.0.0.1:8111"
    # A services section's (that profile sets no region: none is shown)
    assert TableRef("Orders", profile="services").describe() == "Orders @ http://127.0.0.1:8222"
    monkeypatch.setenv("AWS_PROFILE", "local")
    assert TableRef("Orders").describe() == "Orders @ eu-central-1 @ http://127.0.0.1:8111"
    # An explicit region is kept; the profile's endpoint still shown.
    assert TableRef("Orders", region="us-west-2").describe() == "Orders @ us-west-2 @ http://127.0.0.1:8111"


def test_endpoints_botocore_is_told_to_ignore_are_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:8000")
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert TableRef("Orders").describe() == "Orders @ eu-west-1"
    assert TableRef("Orders", profile="local").describe() == "Orders @ eu-central-1"


def test_an_unreadable_profile_leaves_the_label_to_the_options() -> None:
    assert configured_location("no-such-profile") == (None, None)
    assert TableRef("Orders", profile="no-such-profile", region="us-east-1").describe() == "Orders @ us-east-1"


def test_a_user_and_password_in_an_endpoint_are_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://me:secret@localhost:8000")
    label = TableRef("Orders").describe()
    assert "secret" not in label and label.endswith("@ http://localhost:8000")
