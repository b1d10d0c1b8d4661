"""`campaignbot init [DIR]`: scaffold a project from the files shipped in the package."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from campaignbot.cli.common import cli, handle_errors
from campaignbot.errors import CampaignbotError, InvalidInputError
from campaignbot.settings import iter_settings

_PACKAGE = Path(__file__).resolve().parent.parent


def shipped_files() -> Path:
    """The folder holding the default `templates/` and `config/`.

    A wheel carries them as package data (`campaignbot/_data`, copied there by
    setup.py); a source checkout or editable install has them at the repository root.
    """
    for folder in (_PACKAGE / "_data", _PACKAGE.parent.parent):
        if (folder / "templates").is_dir() and (folder / "config" / "campaign.toml").is_file():
            return folder
    raise CampaignbotError(
        f"{_PACKAGE}: the shipped templates and example campaign are missing",
        hint="reinstall campaignbot from a wheel or the source repository",
    )


def env_example() -> str:
    """A commented `.env.example` listing every setting with its default and help."""
    lines = [
        "# campaignbot settings: copy to .env (or /etc/campaignbot/env) and uncomment what",
        "# you change. Unknown CAMPAIGNBOT_* names are an error. Secrets can also come from",
        "# a file: CAMPAIGNBOT_SECRET_KEY_FILE=/path, CAMPAIGNBOT_SMTP__PASSWORD_FILE=/path.",
        "",
    ]
    for setting in iter_settings():
        default = setting.default.strip("`")
        value = "" if default.startswith(("unset", "generated")) or "{" in default else default
        lines.append(f"# {setting.help or setting.variable} (default: {default})")
        lines.append(f"#{setting.variable}={value}")
    return "\n".join(lines) + "\n"


_GITIGNORE = "var/\n.env\n"


@cli.command()
@click.argument(
    "directory",
    metavar="[DIR]",
    required=False,
    default=".",
    type=click.Path(path_type=Path, file_okay=False),
)
@handle_errors
def init(directory: Path) -> None:
    """Scaffold a project in DIR (default: here): a commented campaign file, the
    templates, .env.example and var/. Existing files are never overwritten."""
    source = shipped_files()
    targets = {
        "config": directory / "config",
        "templates": directory / "templates",
        ".env.example": directory / ".env.example",
    }
    existing = [str(path) for path in targets.values() if path.exists()]
    if existing:
        raise InvalidInputError(
            f"{', '.join(existing)}: already there; nothing changed",
            hint="run init in an empty folder, or move those aside",
        )
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source / "config", targets["config"])
    shutil.copytree(source / "templates", targets["templates"])
    targets[".env.example"].write_text(env_example(), encoding="utf-8")
    gitignore = directory / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(_GITIGNORE, encoding="utf-8")
    var = directory / "var"
    var.mkdir(exist_ok=True)
    var.chmod(0o700)  # the database and the signing key live here
    click.echo(f"Created a campaignbot project in {directory}:")
    click.echo("  config/campaign.toml   the events and reminders (commented)")
    click.echo("  templates/             the emails and public pages, per language")
    click.echo("  .env.example           every setting with its default")
    click.echo("  var/                   database, outbox and signing key")
    where = "" if directory == Path(".") else f"cd {directory} && "
    click.echo(f"Next: {where}campaignbot check && campaignbot plan && campaignbot run")
