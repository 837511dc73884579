"""llama-server's ``/slots``: the only live token count llama.cpp offers.

llama.cpp's Prometheus counters (``llamacpp:tokens_predicted_total``) move only
when a request finishes, so a long generation shows 0 tokens/s until its end.
``/slots`` lists every slot with ``next_token[0].n_decoded``, the tokens decoded
so far by the slot's current (or, when idle, previous) request, which counts
up during the request. Summed over the slots that are processing, its change
between two ticks is the live generation rate (a slot whose request ended in
between drops out of the sum; the counter picks those tokens up).

Shapes handled: ``next_token`` as a list of one object (current llama.cpp) or
as an object (older builds); ``is_processing`` (current) or ``state`` != 0
(older builds, 0 = idle).

KV capacity: each slot reports its ``n_ctx``. With the default per-slot cache
(``-np N -c C``) each slot holds C/N tokens, so the sum over slots is the whole
cache, C. With ``--kv-unified`` (which llama-server also turns on when ``-np``
is left on auto) the slots share one cache and each reports all of it, so the
sum overstates capacity by the number of slots; ``n_ctx_max`` is then the
right figure. ``/slots`` alone cannot tell the two apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from infermon.probes.http import fetch

NO_SLOTS_HINT = "start llama-server without --no-slots for live rates"
_SLOTS_BODY_LIMIT = 1_000_000  # a few hundred slots with their params fit in well under 1 MB


@dataclass(frozen=True)
class SlotsReading:
    """One read of ``/slots``. ``decoded`` = Σ n_decoded over processing slots (tokens);
    ``processing`` = slots busy; ``n_ctx_total`` = Σ n_ctx over all slots (tokens);
    ``n_ctx_max`` = the largest slot's n_ctx; ``slots`` = number of slots."""

    decoded: float | None
    processing: int | None
    n_ctx_total: int | None
    n_ctx_max: int | None = None
    slots: int | None = None
    why: str | None = None


def _n_decoded(slot: dict) -> float | None:
    next_token = slot.get("next_token")
    if isinstance(next_token, list):
        next_token = next_token[0] if next_token else None
    if not isinstance(next_token, dict):
        return None
    value = next_token.get("n_decoded")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _is_processing(slot: dict) -> bool:
    if "is_processing" in slot:
        return bool(slot["is_processing"])
    return slot.get("state", 0) != 0


def slots_from_json(payload: object) -> SlotsReading:
    """Sum a decoded ``/slots`` payload (a list of slot objects)."""
    if not isinstance(payload, list) or not all(isinstance(s, dict) for s in payload):
        return SlotsReading(None, None, None, why="unexpected /slots answer (not a list of slots)")
    decoded = 0.0
    processing = 0
    missing_counts = 0
    for slot in payload:
        if not _is_processing(slot):
            continue  # an idle slot still shows its previous request's n_decoded
        processing += 1
        n = _n_decoded(slot)
        if n is None:
            missing_counts += 1
        else:
            decoded += n
    contexts = [int(s["n_ctx"]) for s in payload if isinstance(s.get("n_ctx"), int) and s["n_ctx"] > 0]
    n_ctx_total = sum(contexts) if contexts else None
    why = None
    if missing_counts:
        why = f"{missing_counts} processing slot(s) without next_token.n_decoded"
    return SlotsReading(
        decoded=None if missing_counts else decoded,
        processing=processing,
        n_ctx_total=n_ctx_total,
        n_ctx_max=max(contexts) if contexts else None,
        slots=len(payload),
        why=why,
    )


def read_slots(base_url: str, timeout_s: float = 1.0) -> SlotsReading:
    """GET ``{base_url}/slots`` within ``timeout_s`` and sum it. Never raises."""
    got = fetch(base_url.rstrip("/") + "/slots", timeout_s, _SLOTS_BODY_LIMIT, expect="json")
    if not got.ok:
        # llama-server answers 501 when started with --no-slots; very old builds have no route (404)
        why = NO_SLOTS_HINT if got.status in (404, 501) else f"/slots: {got.why}"
        return SlotsReading(None, None, None, why=why)
    try:
        payload = json.loads(got.body)
    except (ValueError, UnicodeDecodeError):
        return SlotsReading(None, None, None, why="/slots answered with something other than JSON")
    return slots_from_json(payload)
