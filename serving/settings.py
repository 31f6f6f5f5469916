"""A service's settings: one pydantic-settings model per service, each environment variable
one field (`<prefix><FIELD NAME>`), its documentation the field's description, from which
`variables` and `help_text` (the `--help` of `tessera gateway|connector serve`) are made.

`from_env` reads the variables (blank ones count as unset), lets command-line overrides win,
names every missing setting in one error, and turns whatever pydantic refuses into one
`SettingsError` line naming each variable: `tessera` prints it and exits 2."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticUndefined
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from schema.errors import ConfigError, SettingsError

__all__ = ["ServiceSettings", "SettingsError", "options"]


# What pydantic says of a value it cannot parse, as an operator reads it.
_REASONS: dict[str, str] = {
    "int_parsing": "not an integer",
    "int_from_float": "not an integer",
    "float_parsing": "not a number",
    "bool_parsing": "expected true or false",
    "missing": "is required",
}


def options(names: str, **renamed: str) -> dict[str, str]:
    """The `serve` option of each setting that has one: `--` and the field's name in kebab
    case (`audit_db`: `--audit-db`), unless `renamed` says otherwise."""
    return {name: f"--{name.replace('_', '-')}" for name in names.split()} | renamed


class _Environment(EnvSettingsSource):
    """The process environment, or the mapping given to `from_env`; values are stripped and a
    blank value is no value (`VAR=` in a compose file leaves the default)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {
            key.lower(): value.strip()
            for key, value in self._environ.items()
            if key.upper().startswith(self.env_prefix.upper()) and value.strip()
        }


class ServiceSettings(BaseSettings):
    """The base of each service's settings. Built directly, a settings object holds exactly
    the values given (tests); `from_env` reads the environment."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", case_sensitive=False)

    # The `serve` option of each setting that has one, for messages: `--state (…STATE_DIR)`.
    OPTIONS: ClassVar[Mapping[str, str]] = {}

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(type(self).problems(exc.errors())) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment is read by `from_env` only, never by a dotenv file or secrets dir.
        return (init_settings,)

    @classmethod
    def prefix(cls) -> str:
        return cls.model_config.get("env_prefix") or ""

    @classmethod
    def variable(cls, name: str) -> str:
        return f"{cls.prefix()}{name.upper()}"

    @classmethod
    def describe(cls, name: str) -> str:
        """A setting as an operator meets it: its option (if any) and its variable."""
        option = cls.OPTIONS.get(name)
        return f"{option} ({cls.variable(name)})" if option else cls.variable(name)

    @classmethod
    def variables(cls) -> tuple[str, ...]:
        return tuple(cls.variable(name) for name in cls.model_fields)

    @classmethod
    def missing(cls, values: Mapping[str, Any]) -> list[str]:
        """What `values` (environment and overrides) lack, each named; a service adds its
        own rules (one of two settings, say)."""
        return [
            f"{cls.describe(name)} is required"
            for name, info in cls.model_fields.items()
            if info.is_required() and values.get(name) is None
        ]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Settings from `environ` (default `os.environ`); keyword `overrides` (field names,
        e.g. from command-line options; None means not given) win over the environment."""
        unknown = set(overrides) - set(cls.model_fields)
        if unknown:
            raise TypeError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
        values = dict(_Environment(cls, os.environ if environ is None else environ)())
        values.update({k: v for k, v in overrides.items() if v is not None})
        missing = cls.missing(values)
        if missing:
            raise SettingsError("; ".join(missing))
        return cls(**values)

    @classmethod
    def problems(cls, errors: list[ErrorDetails]) -> str:
        """One line for everything pydantic refused, each naming its variable."""
        found: list[str] = []
        for error in errors:
            cause = (error.get("ctx") or {}).get("error")
            if isinstance(cause, ConfigError):
                found.append(str(cause))  # a service's own check, worded in full
                continue
            name = str(error["loc"][0]) if error["loc"] else ""
            reason = _REASONS.get(error["type"]) or str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "enum":
                reason = f"expected {str(error['ctx']['expected']).replace(chr(39), '')}"
            if error["type"] == "missing":
                found.append(f"{cls.describe(name)} {reason}")
            else:
                found.append(f"{cls.variable(name)} is invalid: {reason}")
        return "; ".join(dict.fromkeys(found))

    @classmethod
    def help_text(cls, width: int = 78) -> str:
        """Every variable, its default and its description: the `--help` epilog."""
        lines = []
        for name, info in cls.model_fields.items():
            lines.append(f"{cls.variable(name)}{_default(info)}")
            text = " ".join((info.description or "").split())
            lines.extend(textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="  "))
        return "\n".join(lines)


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return " (required)"
    # None and "" stand for a default the description words (e.g. "beside the database").
    if info.default in (None, "", PydanticUndefined):
        return ""
    value = getattr(info.default, "value", info.default)
    return f" (default {str(value).lower() if isinstance(value, bool) else value})"
