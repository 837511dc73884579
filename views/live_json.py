"""The ``--once --json`` object (schema 2): the :class:`~infermon.live.view.LiveView` as plain JSON.

The same object, line by line, is what ``--record`` writes (see :mod:`infermon.views.recording`)
and what ``replay`` reads back. It is always strict JSON: a non-finite number anywhere becomes
``null`` (the figures layer already turns them into ``n/a`` with a reason).
"""

from __future__ import annotations

import json
import math
from typing import Any

from infermon.live.view import LiveView
from infermon.probes.snapshot import to_plain


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinity replaced by None (JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, indent: int | None = None) -> str:
    """Strict JSON text: never ``NaN`` or ``Infinity``."""
    return json.dumps(finite(obj), indent=indent, allow_nan=False, ensure_ascii=False,
                      separators=(",", ":") if indent is None else None)


def live_to_json(view: LiveView) -> dict[str, Any]:
    """The whole tick as one JSON-ready dict (``figures`` keyed by name, each with value, unit,
    source, why, note, stale)."""
    return finite(to_plain(view))
