"""`templates/web/`: the page templates, one message catalog per language, the stylesheet."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from campaignbot.errors import ConfigError


class Pages:
    """`templates/web/`: page templates, one message catalog per language, the stylesheet."""

    def __init__(self, folder: Path, default_locale: str) -> None:
        if not (folder / "base.html.j2").is_file():
            raise ConfigError(f"{folder}: web page templates not found (CAMPAIGNBOT_TEMPLATES)")
        self.env = SandboxedEnvironment(
            loader=FileSystemLoader(folder),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self.stylesheet = (folder / "style.css").read_bytes()
        self.catalogs: dict[str, dict[str, Any]] = {}
        for path in sorted((folder / "i18n").glob("*.toml")):
            try:
                self.catalogs[path.stem] = tomllib.loads(path.read_text("utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
                raise ConfigError(f"{path}: {err}") from err
        self.fallback = default_locale if default_locale in self.catalogs else "en"
        if self.fallback not in self.catalogs:
            raise ConfigError(f"{folder / 'i18n'}: no message catalog for {default_locale!r}")
        base = self.catalogs[self.fallback]
        # each language's texts, a missing one taken from the default language
        self._merged = {
            lang: {
                **base,
                **own,
                **{
                    table: {**base.get(table, {}), **own.get(table, {})}
                    for table in ("topics", "privacy")
                },
            }
            for lang, own in self.catalogs.items()
        }

    def catalog(self, lang: str) -> dict[str, Any]:
        """The texts of `lang` (the default language's for one without a catalog)."""
        return self._merged.get(lang) or self._merged[self.fallback]

    def render(self, name: str, context: dict[str, Any]) -> str:
        return self.env.get_template(name).render(context)
