"""Colour themes for the dashboard: built-in ones and a user's theme file.

Built in: ``dark`` (default), ``light``, ``high-contrast`` and ``ansi`` (the
terminal's own 16-colour palette, for 256-colour SSH sessions and terminals
whose colours you have tuned). A user theme in
``$XDG_CONFIG_HOME/infermon/theme.toml`` (default ``~/.config``) is added as
``user`` and selected by default when present.
"""

from __future__ import annotations

import dataclasses
import os
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib
from pathlib import Path

from textual.theme import BUILTIN_THEMES, Theme

DARK = Theme(
    name="dark", primary="#4FA3E0", secondary="#3B6E99", accent="#F2B134", warning="#F2B134",
    error="#E5534B", success="#57AB5A", foreground="#DDE3EA", background="#12161C", surface="#1A2029",
    panel="#232B36", dark=True,
)
LIGHT = Theme(
    name="light", primary="#0B62B8", secondary="#4A6A8A", accent="#B35900", warning="#9A5B00",
    error="#B42318", success="#1E7A34", foreground="#1B1F24", background="#F7F8FA", surface="#FFFFFF",
    panel="#E8ECF1", dark=False,
)
HIGH_CONTRAST = Theme(
    name="high-contrast", primary="#00FFFF", secondary="#FFFFFF", accent="#FFFF00", warning="#FFFF00",
    error="#FF4040", success="#00FF00", foreground="#FFFFFF", background="#000000", surface="#000000",
    panel="#1A1A1A", dark=True, luminosity_spread=0.0,
)
ANSI = dataclasses.replace(BUILTIN_THEMES["ansi-dark"], name="ansi")

BUILTIN: tuple[Theme, ...] = (DARK, LIGHT, HIGH_CONTRAST, ANSI)
THEME_KEYS = ("primary", "secondary", "accent", "warning", "error", "success", "foreground", "background",
              "surface", "panel", "boost")


MAX_THEME_BYTES = 64 * 1024


class ThemeFileError(ValueError):
    """A user theme file that cannot be used; the message is one line."""


def user_theme_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / "infermon" / "theme.toml"


def load_user_theme(path: Path | None = None) -> Theme | None:
    """The user's theme (``[theme]`` table: primary, background, … as colours, ``dark`` as a boolean),
    or None when there is no file. A malformed file raises :class:`ThemeFileError`."""
    path = path or user_theme_path()
    if not path.exists():
        return None
    text = _read_theme_file(path)
    try:
        data = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ThemeFileError(f"{path}: not a readable TOML file ({exc})") from None
    except RecursionError:
        raise ThemeFileError(f"{path}: nested too deeply to be a theme") from None
    table = data.get("theme", data)
    if not isinstance(table, dict) or not isinstance(table.get("primary"), str):
        raise ThemeFileError(f"{path}: needs a [theme] table with at least primary = \"#rrggbb\"")
    values = {key: table[key] for key in THEME_KEYS if isinstance(table.get(key), str)}
    from textual.color import Color, ColorParseError

    for key, value in values.items():
        try:
            Color.parse(value)
        except ColorParseError:
            raise ThemeFileError(f"{path}: {key} = {value!r} is not a colour") from None
    return Theme(name="user", dark=bool(table.get("dark", True)), **values)


def _read_theme_file(path: Path) -> str:
    """The file's text, bounded: a regular file (a FIFO or device would block or never end) of at
    most MAX_THEME_BYTES, UTF-8."""
    import stat

    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ThemeFileError(f"{path}: not a regular file")
        if info.st_size > MAX_THEME_BYTES:
            raise ThemeFileError(f"{path}: {info.st_size:,} bytes, too large for a theme (at most {MAX_THEME_BYTES:,})")
        fd = os.open(path, flags)
        try:
            data = os.read(fd, MAX_THEME_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ThemeFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_THEME_BYTES:
        raise ThemeFileError(f"{path}: too large for a theme (at most {MAX_THEME_BYTES:,} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ThemeFileError(f"{path}: not UTF-8 text") from None


def theme_names(user: Theme | None) -> list[str]:
    return [t.name for t in BUILTIN] + (["user"] if user else [])
