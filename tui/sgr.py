"""Fewer bytes to the terminal for the same screen: style changes as differences, not restatements.

Textual writes every run of text as ``ESC[<the whole style>m text ESC[0m``: with true colour that is
about 40 bytes of style for a figure of 5 characters, and at 1 Hz two thirds of what the dashboard
sends over an SSH link. :class:`SgrCoalescer` rewrites such a stream so that the terminal ends up
with the same cells:

- a reset (``ESC[0m``) is not sent until something is printed, and then only if the next style
  needs it: ``ESC[1;38;2;221;227;234;48;2;18;22;28m label ESC[0m ESC[38;2;221;227;234;48;2;18;22;28m
  value`` becomes ``ESC[1;…m label ESC[22m value``;
- each style is sent as the shorter of the attributes that change and a reset followed by the
  whole style;
- a line break right before an absolute cursor move is dropped (the move decides where the cursor
  goes).

What it relies on: cursor moves and line breaks paint nothing, so a style may stay set across
them. That holds while a line feed does not scroll the screen, and Textual's never does: it moves
the cursor to every line it draws and never breaks the last one. Any other escape sequence is
passed through as it is, after the style the original stream had at that point is in force, so the
terminal's state always matches the original's where it could matter. A style this module cannot
read (colon sub-parameters, underline colours) is passed through verbatim, and so is every style
after it until the next plain reset.
"""

from __future__ import annotations

import functools
import re

# ESC[<params>m | ESC[<row>;<col>H | a line break | other escape starts | plain text
# Textual's usual run, ESC[<params>m text ESC[0m, is one token (half the tokens to go through).
_TOKEN = re.compile(r"\x1b\[([0-9;]*)m([^\x1b\r\n]+)\x1b\[0m|"
                    r"\x1b\[([0-9;:]*)m|(\x1b\[[0-9]*;?[0-9]*H)|(\r?\n)|(\x1b|[^\x1b\r\n]+|\r)")
_RUN, _PARAMS, _MOVE, _LINE_BREAK, _OTHER = 2, 3, 4, 5, 6
_RESETS = ("", "0")

# attribute -> the parameter that turns it off (bold and dim share one, as do the underlines)
_OFF = {"1": "22", "2": "22", "3": "23", "4": "24", "21": "24", "5": "25", "6": "25", "7": "27",
        "8": "28", "9": "29", "51": "54", "52": "54", "53": "55"}
_CLEARS = {"22": ("1", "2"), "23": ("3",), "24": ("4", "21"), "25": ("5", "6"), "27": ("7",),
           "28": ("8",), "29": ("9",), "54": ("51", "52"), "55": ("53",)}
_ORDER = ("1", "2", "3", "4", "21", "5", "6", "7", "8", "9", "51", "52", "53", "fg", "bg")
_BASIC_FG = frozenset(str(n) for n in (*range(30, 38), *range(90, 98)))
_BASIC_BG = frozenset(str(n) for n in (*range(40, 48), *range(100, 108)))

# A style: for each attribute in _ORDER, the parameters that set it ("1", "38;2;r;g;b", …) or None.
Style = tuple
PLAIN: Style = (None,) * len(_ORDER)
_SLOT = {attribute: index for index, attribute in enumerate(_ORDER)}


def style_of(attributes: dict[str, str]) -> Style:
    """The style with these attributes set ({"1": "1", "fg": "38;5;196"}: bold, colour 196)."""
    return tuple(attributes.get(attribute) for attribute in _ORDER)


def attributes_of(style: Style) -> dict[str, str]:
    """The attributes ``style`` sets (the inverse of :func:`style_of`)."""
    return {attribute: code for attribute, code in zip(_ORDER, style) if code is not None}


@functools.lru_cache(maxsize=4096)
def parse_sgr(params: str, style: Style = PLAIN) -> Style | None:
    """The style after ``ESC[<params>m`` is applied to ``style``; None when a parameter is not one
    this module models (the caller then passes the sequence through untouched). Cached: a
    dashboard uses a few dozen styles."""
    if ":" in params:
        return None
    out = list(style)
    values = params.split(";") if params else [""]
    i = 0
    while i < len(values):
        value = values[i]
        if value in ("", "0"):
            out = list(PLAIN)
        elif value in _OFF:
            out[_SLOT[value]] = value
        elif value in _CLEARS:
            for attribute in _CLEARS[value]:
                out[_SLOT[attribute]] = None
        elif value in _BASIC_FG:
            out[_SLOT["fg"]] = value
        elif value in _BASIC_BG:
            out[_SLOT["bg"]] = value
        elif value == "39":
            out[_SLOT["fg"]] = None
        elif value == "49":
            out[_SLOT["bg"]] = None
        elif value in ("38", "48"):
            kind = values[i + 1] if i + 1 < len(values) else None
            count = {"5": 1, "2": 3}.get(kind)
            if count is None or i + 2 + count > len(values):
                return None
            numbers = values[i + 2:i + 2 + count]
            if not all(n.isdigit() and int(n) <= 255 for n in numbers):
                return None
            out[_SLOT["fg" if value == "38" else "bg"]] = ";".join([value, kind, *numbers])
            i += 1 + count
        else:
            return None
        i += 1
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def transition(current: Style, target: Style) -> str:
    """The shortest SGR sequence that takes the terminal from ``current`` to ``target`` ('' when
    they are the same)."""
    if current == target:
        return ""
    if target == PLAIN:
        return "\x1b[0m"
    offs: list[str] = []
    after = list(current)
    for attribute, now, wanted in zip(_ORDER, current, target):
        if now is not None and wanted is None:
            code = {"fg": "39", "bg": "49"}.get(attribute) or _OFF[attribute]
            if code not in offs:
                offs.append(code)
                for cleared in _CLEARS.get(code, (attribute,)):
                    after[_SLOT[cleared]] = None
    ons = [wanted for wanted, now in zip(target, after) if wanted is not None and wanted != now]
    relative = ";".join(offs + ons)
    restated = ";".join(["0", *(code for code in target if code is not None)])
    return f"\x1b[{relative if len(relative) <= len(restated) else restated}m"


class SgrCoalescer:
    """Rewrites what a Textual driver writes so that style changes cost as few bytes as possible.

    One instance per terminal: it remembers the style in force between writes. Every write ends
    with the terminal in the style the original stream left it in.
    """

    def __init__(self) -> None:
        self._sent: Style = PLAIN  # the style the terminal has now
        self._wanted: Style = PLAIN  # the style the original stream has at this point
        self._verbatim = False  # a style this module cannot read is in force

    def feed(self, data: str) -> str:
        """``data`` rewritten; the same screen once the terminal has read it."""
        out: list[str] = []
        append = out.append
        pending_break = ""
        sent, wanted = self._sent, self._wanted
        for match in _TOKEN.finditer(data):
            kind = match.lastindex  # which alternative of _TOKEN matched
            token = match.group(kind)
            if kind == _LINE_BREAK:
                if pending_break:
                    append(pending_break)
                pending_break = token
                continue
            if kind == _MOVE:
                pending_break = ""  # the move alone decides where the cursor goes
                append(token)
                continue
            if pending_break:
                append(pending_break)
                pending_break = ""
            if kind == _RUN:
                style = None if self._verbatim else (
                    PLAIN if match.group(1) in _RESETS else parse_sgr(match.group(1), wanted))
                if style is not None:
                    if sent != style:
                        append(transition(sent, style))
                        sent = style
                    append(token)
                    wanted = PLAIN
                    continue
                # A style this module cannot read, or one after such: as it came. Its reset
                # ends that.
                if sent != wanted and not self._verbatim:
                    append(transition(sent, wanted))
                append(match.group(0))
                self._verbatim = False
                sent = wanted = PLAIN
                continue
            if kind == _PARAMS and not self._verbatim:
                parsed = PLAIN if token in _RESETS else parse_sgr(token, wanted)
                if parsed is not None:
                    wanted = parsed
                    continue
                self._verbatim = True  # a style this module cannot read: it goes as it came
                if sent != wanted:
                    append(transition(sent, wanted))
                append(match.group(0))
                continue
            if kind == _PARAMS:
                append(match.group(0))
                # A sequence that starts with a reset and reads fully says the whole style again.
                known = parse_sgr(token) if token.split(";")[0] in _RESETS else None
                if known is not None:
                    self._verbatim = False
                    sent = wanted = known
                continue
            if token == "\r":  # a carriage return paints nothing either
                append(token)
                continue
            # Text, or an escape sequence this module does not model: the terminal must have the
            # style the original had here.
            if sent != wanted and not self._verbatim:
                append(transition(sent, wanted))
                sent = wanted
            append(token)
        if pending_break:
            append(pending_break)
        if sent != wanted and not self._verbatim:
            append(transition(sent, wanted))
            sent = wanted
        self._sent, self._wanted = sent, wanted
        return "".join(out)
