"""The settings shell both services share: each variable one field with its description,
blank values unset, overrides first, every missing setting named at once, every refused value
named by its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.settings import ConnectorSettings
from gateway.settings import GatewaySettings
from serving.settings import ServiceSettings, SettingsError

SERVICES: tuple[type[ServiceSettings], ...] = (GatewaySettings, ConnectorSettings)


@pytest.mark.parametrize("settings", SERVICES)
def test_every_variable_is_documented_once_in_its_field(settings: type[ServiceSettings]) -> None:
    undocumented = [n for n, f in settings.model_fields.items() if not (f.description or "")]
    assert undocumented == []
    text = settings.help_text()
    for variable in settings.variables():
        assert f"\n{variable} " in f"\n{text}" or f"\n{variable}\n" in f"\n{text}\n"


def test_blank_values_are_unset_and_values_are_stripped() -> None:
    settings = GatewaySettings.from_env(
        {
            "TESSERA_GATEWAY_FEDERATION": " f.toml ",
            "TESSERA_GATEWAY_HOST": "   ",
            "TESSERA_GATEWAY_PORT": "",
            "TESSERA_GATEWAY_PARTIAL_POOLS": "SUPPRESS",
            "OTHER_PORT": "1",
        }
    )
    assert (settings.federation, settings.host, settings.port) == (
        Path("f.toml"),
        "127.0.0.1",
        8400,
    )
    assert settings.partial_pools == "suppress"


def test_every_refused_value_is_named_in_one_line() -> None:
    with pytest.raises(SettingsError) as raised:
        GatewaySettings.from_env(
            {
                "TESSERA_GATEWAY_FEDERATION": "f.toml",
                "TESSERA_GATEWAY_PORT": "http",
                "TESSERA_GATEWAY_CONSOLE": "maybe",
                "TESSERA_GATEWAY_PARTIAL_POOLS": "hide",
            }
        )
    # In the order of the fields.
    assert str(raised.value) == (
        "TESSERA_GATEWAY_PORT is invalid: not an integer; TESSERA_GATEWAY_PARTIAL_POOLS is "
        "invalid: expected mark or suppress; TESSERA_GATEWAY_CONSOLE is invalid: expected true "
        "or false"
    )


def test_a_missing_setting_names_its_option_and_variable() -> None:
    with pytest.raises(SettingsError, match=r"^--federation \(TESSERA_GATEWAY_FEDERATION\) is"):
        GatewaySettings.from_env({})


def test_the_environment_is_read_by_from_env_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_GATEWAY_PORT", "9000")
    assert GatewaySettings(federation=Path("f.toml")).port == 8400
    assert GatewaySettings.from_env({"TESSERA_GATEWAY_FEDERATION": "f.toml"}).port == 8400
    assert GatewaySettings.from_env(federation=Path("f.toml")).port == 9000
