"""Where a checkpoint's bytes are, as its own files say: totals and the parts a decode step reads differently."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StoredBytes:
    """Byte counts (B) measured from a checkpoint's tensor table.

    - ``total``: every stored tensor.
    - ``gathered``: tables a decode step only gathers rows from: the input
      token embedding when the LM head is a tensor of its own, and learned
      position embeddings. A tied embedding is the LM head too, read whole
      every step, so it is not counted here.
    - ``gathered_row``: bytes one token gathers from those tables: one stored
      row of each, at its stored (possibly quantized) width.
    - ``routed_experts``: all routed MoE expert tensors.
    - ``embedding``, ``lm_head``, ``positional``: the input token table, the
      separate output head (0 when tied) and learned positions, as stored.
    - ``source``: where the figures come from, for the user.

    Invariants: 0 ≤ gathered + routed_experts ≤ total; 0 ≤ gathered_row ≤ gathered
    (or gathered = 0).
    """

    total: float
    gathered: float
    gathered_row: float
    routed_experts: float
    source: str
    embedding: float = 0.0
    lm_head: float = 0.0
    positional: float = 0.0
