"""Figures that rest on what the in-process agent sees: KV capacity under the agent, and the
process's memory when there is no GPU allocator to read.

Pure functions of a snapshot's samples; the derivation layer calls them once per tick.
"""

from __future__ import annotations

from dataclasses import dataclass

from infermon.probes.snapshot import AgentSample, DeviceSample

KV_CAPACITY_RULE_GPU = ("KV capacity (modeled) = (free device memory + torch's reserved-but-unallocated cache "
                        "+ resident KV tokens × KV bytes/token) ÷ KV bytes/token: what the allocator could still "
                        "hold, as the agent reads it inside the process")
KV_CAPACITY_RULE_CPU = ("KV capacity (modeled) = (available host memory + resident KV tokens × KV bytes/token) "
                        "÷ KV bytes/token: on a CPU the KV cache grows in host memory")
# The same rules in a figure's note.
KV_CAPACITY_NOTE_GPU = "(free device memory + torch cache free + resident KV) ÷ KV bytes/token"
KV_CAPACITY_NOTE_CPU = "(available host memory + resident KV) ÷ KV bytes/token"


@dataclass(frozen=True)
class InsideKv:
    """Resident KV tokens (as the agent saw them) and the modeled capacity (tokens), with the rule
    used (``rule``) or why a figure is n/a (``why``: figure name → reason)."""

    resident_tokens: float | None
    capacity_tokens: float | None
    source: str | None
    rule: str | None
    why: dict[str, str]
    usage: float | None = None
    note: str | None = None


def agent_kv(agents: tuple[AgentSample, ...], devices: tuple[DeviceSample, ...],
             kv_bytes_per_token: float | None) -> InsideKv:
    """KV under the agent.

    resident = Σ the agents' resident KV tokens (the caches their models returned, or what the
    script reported). On a GPU (an agent with CUDA figures): capacity = (Σ free device memory +
    Σ (reserved − allocated) + resident × KV B/token) ÷ KV B/token. On a CPU: capacity =
    (available host memory + resident × KV B/token) ÷ KV B/token. So headroom = capacity −
    resident is the memory still free, in tokens. n/a, with the reason, when the resident count,
    the free memory or KV bytes per token is unknown: a capacity resting on an unknown is no figure.
    """
    why: dict[str, str] = {}
    known = [a.kv_tokens_resident for a in agents if a.kv_tokens_resident is not None]
    resident = float(sum(known)) if known else None
    if resident is None:
        why["kv_tokens_resident"] = next((a.why["kv_tokens_resident"] for a in agents if "kv_tokens_resident" in a.why),
                                         "the agent reports no KV cache")
    sources = {a.kv_source for a in agents if a.kv_source}
    source = "reported by the script (agent.kv_tokens)" if sources == {"reported"} else \
        "the KV cache the model returned (agent)" if sources else None
    if not kv_bytes_per_token:
        why["kv_capacity_tokens"] = "KV bytes per token unknown (model unknown)"
        return InsideKv(resident, None, source, None, why)
    cuda = [a for a in agents if a.device_free_bytes is not None]
    if cuda:
        free = sum(a.device_free_bytes for a in cuda)
        free += sum(max(0, (a.torch_reserved_bytes or 0) - (a.torch_allocated_bytes or 0)) for a in cuda)
        rule, note = KV_CAPACITY_RULE_GPU, KV_CAPACITY_NOTE_GPU
    else:
        host = next((d for d in devices if d.kind == "host"), None)
        if host is None or host.memory_total_bytes is None or host.memory_used_bytes is None:
            why["kv_capacity_tokens"] = "neither free device memory (no CUDA in the process) nor available host memory known"
            return InsideKv(resident, None, source, None, why)
        free = max(0, host.memory_total_bytes - host.memory_used_bytes)
        rule, note = KV_CAPACITY_RULE_CPU, KV_CAPACITY_NOTE_CPU
    if resident is None:
        why["kv_capacity_tokens"] = "rests on the resident KV tokens, which the agent does not see here"
        return InsideKv(None, None, source, rule, why, note=note)
    capacity = free / kv_bytes_per_token + resident
    return InsideKv(resident, capacity, source, rule, why, usage=resident / capacity if capacity > 0 else None,
                    note=note)


@dataclass(frozen=True)
class InsideMemory:
    """The watched processes' memory as the agents see it (bytes): RSS, the watched models'
    weights and, with CUDA, the torch allocator; ``why`` says what is n/a."""

    rss_bytes: int | None
    weights_bytes: int | None
    torch_allocated_bytes: int | None
    torch_reserved_bytes: int | None
    why: dict[str, str]


def agent_memory(agents: tuple[AgentSample, ...]) -> InsideMemory:
    """Σ over the agents of RSS, weights and torch allocated/reserved (None where no agent has it)."""

    def total(name: str) -> int | None:
        values = [getattr(a, name) for a in agents if getattr(a, name) is not None]
        return sum(values) if values else None

    why: dict[str, str] = {}
    if not agents:
        why["agent"] = "no agent in the process tree (infermon run / attach)"
    memory = InsideMemory(total("rss_bytes"), total("weights_bytes"), total("torch_allocated_bytes"),
                          total("torch_reserved_bytes"), why)
    for name in ("rss_bytes", "weights_bytes", "torch_allocated_bytes", "torch_reserved_bytes"):
        if getattr(memory, name) is None and agents:
            why[name] = next((a.why[key] for a in agents for key in (name, "torch") if key in a.why),
                             "no watched model" if name == "weights_bytes" else "not reported by the agent")
    return memory
