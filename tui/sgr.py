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

import re

# ESC[<params>m | ESC[<row>;<col>H | a line break | other escape starts | plain text
_TOKEN = re.compile(r"\x1b\[([0-9;:]*)m|(\x1b\[[0-9]*;?[0-9]*H)|(\r?\n)|(\x1b)|([^\x1b\r\n]+|\r)")

# attribute -> the parameter that turns it off (bold and dim share one, as do the underlines)
_OFF = {"1": "22", "2": "22", "3": "23", "4": "24", "21": "24", "5": "25", "6": "25", "7": "27",
        "8": "28", "9": "29", "51": "54", "52": "54", "53": "55"}
_CLEARS = {"22": ("1", "2"), "23": ("3",), "24": ("4", "21"), "25": ("5", "6"), "27": ("7",),
           "28": ("8",), "29": ("9",), "54": ("51", "52"), "55": ("53",)}
_ORDER = ("1", "2", "3", "4", "21", "5", "6", "7", "8", "9", "51", "52", "53", "fg", "bg")
_BASIC_FG = frozenset(str(n) for n in (*range(30, 38), *range(90, 98)))
_BASIC_BG = frozenset(str(n) for n in (*range(40, 48), *range(100, 108)))

Style = dict  # attribute ("1", "fg", ...) -> the parameters that set it ("1", "38;2;r;g;b", ...)


def parse_sgr(params: str, style: Style) -> Style | None:
    """The style after ``ESC[<params>m`` is applied to ``style``; None when a parameter is not one
    this module models (the caller then passes the sequence through untouched)."""
    if ":" in params:
        return None
    out = dict(style)
    values = params.split(";") if params else [""]
    i = 0
    while i < len(values):
        value = values[i]
        if value in ("", "0"):
            out.clear()
        elif value in _OFF:
            out[value] = value
        elif value in _CLEARS:
            for attribute in _CLEARS[value]:
                out.pop(attribute, None)
        elif value in _BASIC_FG:
            out["fg"] = value
        elif value in _BASIC_BG:
            out["bg"] = value
        elif value == "39":
            out.pop("fg", None)
        elif value == "49":
            out.pop("bg", None)
        elif value in ("38", "48"):
            kind = values[i + 1] if i + 1 < len(values) else None
            count = {"5": 1, "2": 3}.get(kind)
            if count is None or i + 2 + count > len(values):
                return None
            numbers = values[i + 2:i + 2 + count]
            if not all(n.isdigit() and int(n) <= 255 for n in numbers):
                return None
            out["fg" if value == "38" else "bg"] = ";".join([value, kind, *numbers])
            i += 1 + count
        else:
            return None
        i += 1
    return out


def _codes(style: Style) -> list[str]:
    return [style[key] for key in _ORDER if key in style]


def transition(current: Style, target: Style) -> str:
    """The shortest SGR sequence that takes the terminal from ``current`` to ``target`` ('' when
    they are the same)."""
    if current == target:
        return ""
    if not target:
        return "\x1b[0m"
    offs: list[str] = []
    after = dict(current)
    for attribute in _ORDER:
        if attribute in current and attribute not in target:
            code = {"fg": "39", "bg": "49"}.get(attribute) or _OFF[attribute]
            if code not in offs:
                offs.append(code)
                for cleared in _CLEARS.get(code, (attribute,)):
                    after.pop(cleared, None)
    ons = [target[key] for key in _ORDER if key in target and after.get(key) != target[key]]
    relative = ";".join(offs + ons)
    restated = ";".join(["0", *_codes(target)])
    return f"\x1b[{relative if len(relative) <= len(restated) else restated}m"


class SgrCoalescer:
    """Rewrites what a Textual driver writes so that style changes cost as few bytes as possible.

    One instance per terminal: it remembers the style in force between writes. Every write ends
    with the terminal in the style the original stream left it in.
    """

    def __init__(self) -> None:
        self._sent: Style = {}  # the style the terminal has now
        self._wanted: Style = {}  # the style the original stream has at this point
        self._verbatim = False  # a style this module cannot read is in force

    def feed(self, data: str) -> str:
        """``data`` rewritten; the same screen once the terminal has read it."""
        out: list[str] = []
        append = out.append
        pending_break = ""
        for match in _TOKEN.finditer(data):
            params, move, line_break, escape, text = match.groups()
            if line_break is not None:
                if pending_break:
                    append(pending_break)
                pending_break = line_break
                continue
            if move is not None:
                pending_break = ""  # the move alone decides where the cursor goes
                append(move)
                continue
            if pending_break:
                append(pending_break)
                pending_break = ""
            if text == "\r":  # a carriage return paints nothing either
                append(text)
                continue
            if params is not None:
                self._style(params, match.group(0), append)
                continue
            # Text, or an escape sequence this module does not model: the terminal must have the
            # style the original had here.
            self._settle(append)
            append(escape if escape is not None else text)
        if pending_break:
            append(pending_break)
        self._settle(append)
        return "".join(out)

    def _style(self, params: str, raw: str, append) -> None:
        if self._verbatim:
            append(raw)
            # A sequence that starts with a reset and reads fully says the whole style again.
            known = parse_sgr(params, {}) if params.split(";")[0] in ("", "0") else None
            if known is not None:
                self._verbatim = False
                self._sent, self._wanted = known, dict(known)
            return
        parsed = parse_sgr(params, self._wanted)
        if parsed is None:
            self._settle(append)
            append(raw)
            self._verbatim = True
            return
        self._wanted = parsed

    def _settle(self, append) -> None:
        if not self._verbatim and self._sent != self._wanted:
            append(transition(self._sent, self._wanted))
            self._sent = dict(self._wanted)
