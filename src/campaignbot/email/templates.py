"""The template folder: a sandboxed Jinja environment, the locales it has, and
template errors as `FILE:LINE: message` problems."""

from __future__ import annotations

import os
from pathlib import Path

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    select_autoescape,
)
from jinja2.sandbox import SandboxedEnvironment

from campaignbot.errors import Problem

KINDS = ("alert", "notice", "confirm")
PARTS = ("subject", "txt", "html")


def _template_file(folder: Path, filename: str | None) -> str | None:
    """`templates/alert/fi.html.j2` for a file inside `folder`, else None."""
    if not filename:
        return None
    root = os.path.abspath(folder)
    path = os.path.abspath(filename)
    if os.path.commonpath([root, path]) != root:
        return None
    return str(folder / os.path.relpath(path, root))


def problem_from(err: Exception, folder: Path, fallback: str) -> Problem:
    """One `file:line: message` problem for a template error; jinja rewrites
    tracebacks so that frames carry the template's file name and line."""
    if isinstance(err, TemplateSyntaxError):
        file = _template_file(folder, err.filename) or str(folder / (err.name or fallback))
        return Problem(f"{file}:{err.lineno}", "", err.message or str(err))
    if isinstance(err, TemplateNotFound):
        return Problem(str(folder / fallback), "", f"template not found: {err.message}")
    place = ("", "")
    tb = err.__traceback__
    while tb is not None:
        found = _template_file(folder, tb.tb_frame.f_code.co_filename)
        if found is not None:
            place = (found, str(tb.tb_lineno))  # keep the deepest template frame
        tb = tb.tb_next
    file = f"{place[0]}:{place[1]}" if place[0] else str(folder / fallback)
    return Problem(file, "", str(err) or type(err).__name__)


def make_environment(folder: Path) -> SandboxedEnvironment:
    """Sandboxed, strict, HTML-autoescaped; templates are compiled once (no reload)."""
    return SandboxedEnvironment(
        loader=FileSystemLoader(folder),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        cache_size=-1,
    )


def template_locales(folder: Path) -> list[str]:
    """Locales that have at least one message template (`alert/fi.txt.j2` -> fi)."""
    found = {
        path.name.split(".", 1)[0]
        for kind in KINDS
        for path in (folder / kind).glob("*.j2")
        if path.is_file()
    }
    return sorted(found)


def missing_template(folder: Path, kind: str, part: str, default: str) -> Problem:
    name = folder / kind / f"{default}.{part}.j2"
    return Problem(str(name), "", f"missing (every locale falls back to {default!r})")
