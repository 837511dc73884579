"""The ``--once --json`` / ``--record`` object: one tick of the monitor in plain JSON.

Every null figure has its reason under the object's ``why``.
"""

from __future__ import annotations

from typing import Any

from infermon.live.derive import LiveView
from infermon.probes.snapshot import to_plain

SCHEMA_VERSION = 1


def _with_why(data: dict[str, Any], reasons: dict[str, str], default: str) -> dict[str, Any]:
    why = {key: reasons.get(key, default) for key, value in data.items() if value is None}
    why.update({k: v for k, v in reasons.items() if k not in data or data.get(k) is None})
    data["why"] = why
    return data


def _gpu_memory_by_pid(view: LiveView) -> dict[int, int]:
    used: dict[int, int] = {}
    for device in view.snapshot.devices:
        for proc in device.processes:
            if proc.used_bytes is not None:
                used[proc.pid] = used.get(proc.pid, 0) + proc.used_bytes
    return used


def process_json(view: LiveView) -> dict[str, Any] | None:
    tree = view.snapshot.tree
    if tree is None:
        return None
    gpu_memory = _gpu_memory_by_pid(view)
    root = tree.root
    children = []
    for proc in tree.processes:
        if proc.pid == tree.root_pid:
            continue
        children.append({"pid": proc.pid, "ppid": proc.ppid, "name": proc.name, "role": proc.role,
                         "cmdline": list(proc.cmdline), "cpu_percent": proc.cpu_percent, "rss_bytes": proc.rss_bytes,
                         "threads": proc.threads, "listening_ports": list(proc.listening_ports),
                         "gpu_memory_bytes": gpu_memory.get(proc.pid)})
    data = {
        "pid": tree.root_pid,
        "name": root.name if root else None,
        "role": root.role if root else None,
        "cmdline": list(root.cmdline) if root else None,
        "alive": tree.alive,
        "framework": tree.framework,
        "framework_evidence": tree.framework_evidence,
        "model_argument": tree.model_argument,
        "cpu_percent": root.cpu_percent if root else None,
        "rss_bytes": root.rss_bytes if root else None,
        "threads": root.threads if root else None,
        "listening_ports": list(root.listening_ports) if root else [],
        "gpu_memory_bytes": gpu_memory.get(tree.root_pid),
        "children": children,
    }
    return _with_why(data, tree.why, "not available for this process")


def engine_json(view: LiveView) -> dict[str, Any]:
    engine = view.snapshot.engine
    if engine is None:
        reason = view.snapshot.why.get("engine", "no engine metrics")
        return {"kind": None, "url": None, "why": {"engine": reason}}
    data = {
        "kind": engine.kind,
        "url": engine.url,
        "version": engine.version,
        "model_name": engine.model_name,
        "generation_tokens_total": engine.generation_tokens_total,
        "prompt_tokens_total": engine.prompt_tokens_total,
        "generation_tokens_per_s": view.rates.generation_tokens_per_s,
        "prompt_tokens_per_s": view.rates.prompt_tokens_per_s,
        "requests_running": engine.requests_running,
        "requests_waiting": engine.requests_waiting,
        "batch": engine.batch,
        "kv_usage": engine.kv_usage,
        "kv_capacity_tokens": engine.kv_capacity_tokens,
        "preemptions": engine.preemptions_total,
        "slots_decoded": engine.slots_decoded,
        "ttft_seconds": to_plain(engine.ttft),
        "inter_token_seconds": to_plain(engine.inter_token),
        "hints": list(engine.hints),
        "notes": list(view.rates.notes),
    }
    reasons = dict(engine.why)
    if view.rates.generation_tokens_per_s is None and "generation_tokens_per_s" not in reasons:
        reasons["generation_tokens_per_s"] = "needs two samples of the counter"
    if view.rates.prompt_tokens_per_s is None and "prompt_tokens_per_s" not in reasons:
        reasons["prompt_tokens_per_s"] = "needs two samples of the counter"
    return _with_why(data, reasons, f"not reported by {engine.kind}")


def model_json(view: LiveView) -> dict[str, Any] | None:
    fig = view.model
    if fig is None:
        return None
    data: dict[str, Any] = {
        "name": fig.name,
        "source": view.model_source,
        "params_total": fig.params.total,
        "params_active": fig.params.active,
        "weight_bytes": fig.weight_bytes,
        "weight_dtype": fig.weight_format.dtype,
        "kv_dtype": fig.kv_dtype,
        "kv_bytes_per_token": fig.kv_bytes_per_token,
        "flops_per_token": fig.flops_per_token,
        "attention": fig.spec.attention_kind,
    }
    if view.ceilings is not None:
        data["ceilings"] = to_plain(view.ceilings)
    return data


def hardware_json(view: LiveView) -> dict[str, Any] | None:
    hw = view.hardware
    if hw is None:
        return None
    return {"name": hw.name, "count": hw.count, "memory_bytes": hw.memory_bytes,
            "bandwidth_bytes_per_s": hw.bandwidth_bytes_per_s, "peak_flops": hw.peak_flops,
            "compute_dtype": hw.compute_dtype, "source": view.hardware_source, "sources": dict(hw.sources)}


def analysis_json(view: LiveView) -> dict[str, Any]:
    a = view.analysis
    data = {
        "phase": a.phase,
        "achieved_bandwidth_bytes_per_s": {"modeled": a.achieved_bandwidth_modeled_bytes_per_s,
                                           "measured": a.achieved_bandwidth_measured_bytes_per_s},
        "achieved_flops_per_s": a.achieved_flops_per_s,
        "mbu": a.mbu,
        "mbu_measured": a.mbu_measured,
        "mfu": a.mfu,
        "operating_intensity": a.operating_intensity,
        "ops_per_byte": a.ops_per_byte,
        "bound": a.bound,
        "decode_ceiling_tokens_per_s": a.decode_ceiling_tokens_per_s,
        "critical_batch": a.critical_batch,
        "context_tokens": a.context_tokens,
        "kv_headroom_tokens": a.kv_headroom_tokens,
        "bandwidth_disagreement": a.bandwidth_disagreement,
        "verdict": a.verdict,
    }
    reasons = dict(a.why)
    if a.achieved_bandwidth_measured_bytes_per_s is not None:
        reasons.pop("achieved_bandwidth_measured_bytes_per_s", None)
    mapped = {
        "mbu": reasons.get("achieved_bandwidth_modeled_bytes_per_s") or reasons.get("model") or reasons.get("hardware"),
        "mbu_measured": reasons.get("achieved_bandwidth_measured_bytes_per_s"),
        "achieved_flops_per_s": reasons.get("model") or "no token rate",
        "operating_intensity": reasons.get("model") or "needs modeled bandwidth and FLOP/s",
        "ops_per_byte": reasons.get("hardware") or "peak FLOP/s unknown",
        "bound": "needs the operating intensity and the ridge",
        "decode_ceiling_tokens_per_s": reasons.get("model") or reasons.get("hardware"),
        "critical_batch": "decode never turns compute-bound at this context, or peak unknown",
        "context_tokens": "needs KV usage and the batch from the engine",
        "bandwidth_disagreement": "needs both modeled and measured bandwidth",
    }
    for key, text in mapped.items():
        if text and key not in reasons:
            reasons[key] = text
    data = _with_why(data, reasons, "not available")
    if a.achieved_bandwidth_modeled_bytes_per_s is None or a.achieved_bandwidth_measured_bytes_per_s is None:
        data["why"]["achieved_bandwidth_bytes_per_s"] = {
            k: v for k, v in (("modeled", reasons.get("achieved_bandwidth_modeled_bytes_per_s") or reasons.get("model")),
                              ("measured", reasons.get("achieved_bandwidth_measured_bytes_per_s")))
            if data["achieved_bandwidth_bytes_per_s"][k] is None and v}
    return data


def agent_json(view: LiveView) -> dict[str, Any] | None:
    """What the in-process agents see (None without one): per process its clocks and counting,
    the watched models, memory; the KV figures resting on them with their source and rule."""
    agents = view.snapshot.agents
    if not agents:
        return None
    kv, memory = view.inside_kv, view.inside_memory
    data: dict[str, Any] = {
        "kv_tokens_resident": kv.resident_tokens if kv else None,
        "kv_tokens_resident_source": kv.source if kv else None,
        "kv_capacity_tokens": kv.capacity_tokens if kv else None,
        "kv_capacity_source": "modeled" if kv and kv.capacity_tokens is not None else None,
        "kv_capacity_rule": kv.rule if kv else None,
        "kv_usage": kv.usage if kv else None,
        "rss_bytes": memory.rss_bytes if memory else None,
        "weights_bytes": memory.weights_bytes if memory else None,
        "torch_allocated_bytes": memory.torch_allocated_bytes if memory else None,
        "torch_reserved_bytes": memory.torch_reserved_bytes if memory else None,
        "processes": [{"pid": a.pid, "time": a.time, "monotonic": a.monotonic, "seq": a.seq, "final": a.final,
                       "counting": a.counting, "requests_total": a.requests_total,
                       "kv_tokens_resident": a.kv_tokens_resident, "kv_bytes_resident": a.kv_bytes_resident,
                       "rss_bytes": a.rss_bytes, "models": [to_plain(m) for m in a.models]} for a in agents],
    }
    reasons: dict[str, str] = {}
    if kv is not None:
        reasons.update(kv.why)
        if kv.usage is None:
            reasons.setdefault("kv_usage", kv.why.get("kv_capacity_tokens", "needs the resident tokens and the capacity"))
    else:
        reasons["kv_capacity_tokens"] = "an engine's metrics are shown: its own KV figures apply"
    if memory is not None:
        reasons.update(memory.why)
    return _with_why(data, reasons, "not reported by the agent")


def replay_json(view: LiveView, previous: LiveView | None = None) -> dict[str, Any]:
    """Everything replay needs to redraw this tick exactly (``--record`` lines carry it under
    ``replay``); the model's figures are left out when unchanged since ``previous``."""
    data = to_plain(view)
    if previous is not None and previous.model == view.model:
        data["model"] = None
        data["model_unchanged"] = True
    return data


def live_to_json(view: LiveView) -> dict[str, Any]:
    """The whole tick as one JSON-ready dict."""
    snapshot = view.snapshot
    why = dict(view.why)
    data = {
        "schema": SCHEMA_VERSION,
        "time": snapshot.time,
        "interval_s": snapshot.interval_s,
        "process": process_json(view),
        "devices": [to_plain(d) for d in snapshot.devices],
        "host": to_plain(snapshot.host),
        "engine": engine_json(view),
        "model": model_json(view),
        "hardware": hardware_json(view),
        "analysis": analysis_json(view),
        "agent": agent_json(view),
        "why": why,
    }
    if data["model"] is None:
        why.setdefault("model", "model unknown (give --model)")
    if data["hardware"] is None:
        why.setdefault("hardware", "no device ceilings")
    if not data["devices"]:
        why.setdefault("devices", "no devices")
    if data["agent"] is None:
        why.setdefault("agent", view.snapshot.why.get("agent", "no agent in the process tree (infermon run / attach)"))
    return data
