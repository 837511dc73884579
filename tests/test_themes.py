"""Themes: the built-in four, a user's theme file, and its errors."""

import pytest

from infermon.themes import BUILTIN, ThemeFileError, load_user_theme, theme_names


def test_builtin_themes():
    assert [t.name for t in BUILTIN] == ["dark", "light", "high-contrast", "ansi"]
    assert next(t for t in BUILTIN if t.name == "ansi").ansi  # the terminal's own palette


def test_user_theme_file(tmp_path):
    path = tmp_path / "theme.toml"
    path.write_text('[theme]\nprimary = "#ff8800"\nbackground = "#101010"\ndark = true\n')
    theme = load_user_theme(path)
    assert theme.name == "user" and theme.primary == "#ff8800"
    assert theme_names(theme)[-1] == "user"


def test_no_file_is_no_theme(tmp_path):
    assert load_user_theme(tmp_path / "missing.toml") is None


@pytest.mark.parametrize("content, message", [
    ("[theme\n", "not a readable TOML file"),
    ("[theme]\nbackground = '#000000'\n", r"needs a \[theme\] table"),
    ("[theme]\nprimary = 'not-a-colour'\n", "is not a colour"),
])
def test_bad_theme_files(tmp_path, content, message):
    path = tmp_path / "theme.toml"
    path.write_text(content)
    with pytest.raises(ThemeFileError, match=message):
        load_user_theme(path)
