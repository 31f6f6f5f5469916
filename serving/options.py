"""`tessera gateway|connector serve --help`: the options, then every environment variable of
the service with its default and description, taken from the settings' fields. The settings
are imported only when help is asked for: `tessera` starts without pydantic's import cost."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from serving.settings import ServiceSettings


def add_settings_help(
    parser: argparse.ArgumentParser, settings: Callable[[], type[ServiceSettings]]
) -> None:
    """`-h/--help` on a parser made with `add_help=False`, listing the variables too."""

    class Help(argparse.Action):
        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: str | Sequence[Any] | None,
            option_string: str | None = None,
        ) -> None:
            cls = settings()
            parser.print_help()
            print(f"\nenvironment variables (options override them):\n{cls.help_text()}")
            parser.exit()

    parser.add_argument(
        "-h", "--help", action=Help, nargs=0, help="show this help and the environment variables"
    )
