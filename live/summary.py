"""The run's perf summary: the seed's "Perf Summary", computed from what was watched.

Tokens are summed tick by tick from counter deltas (an engine restart does not
subtract), FLOPs use the exact parameter count (2 FLOP per matmul parameter
per token) and bytes are kept apart from FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

from infermon.live.derive import LiveView


@dataclass(frozen=True)
class RunSummary:
    """Totals over the watched span. Times in s, tokens, FLOP/s, bytes."""

    span_s: float
    samples: int
    generation_tokens: float | None
    prompt_tokens: float | None
    per_token_latency_s: float | None
    tokens_per_s: float | None
    flops_per_s: float | None
    peak_generation_tokens_per_s: float | None
    mean_mbu: float | None
    max_device_memory_bytes: int | None
    max_torch_allocated_bytes: int | None
    max_torch_reserved_bytes: int | None
    model_name: str | None
    flops_per_token: float | None
    max_rss_bytes: int | None = None
    weights_bytes: int | None = None


class SummaryAccumulator:
    """Feed every :class:`LiveView`; read :meth:`summary` at the end."""

    def __init__(self) -> None:
        self.first_time: float | None = None
        self.last_time: float | None = None
        self.samples = 0
        self.generation = 0.0
        self.prompt = 0.0
        self.saw_generation = False
        self.saw_prompt = False
        self.peak_rate: float | None = None
        self.mbu_sum = 0.0
        self.mbu_count = 0
        self.max_device_memory: int | None = None
        self.max_allocated: int | None = None
        self.max_reserved: int | None = None
        self.max_rss: int | None = None
        self.weights: int | None = None
        self.model_name: str | None = None
        self.flops_per_token: float | None = None
        self._last_monotonic: float | None = None

    def reset(self) -> None:
        self.__init__()

    def add(self, view: LiveView) -> None:
        snap = view.snapshot
        if self.first_time is None:
            self.first_time = snap.monotonic
        seconds = snap.monotonic - self._last_monotonic if self._last_monotonic is not None else 0.0
        self._last_monotonic = snap.monotonic
        self.last_time = snap.monotonic
        self.samples += 1
        rates = view.rates
        if rates.generation_tokens_per_s is not None:
            self.saw_generation = True
            self.generation += rates.generation_tokens_per_s * seconds
            self.peak_rate = max(self.peak_rate or 0.0, rates.generation_tokens_per_s)
        if rates.prompt_tokens_per_s is not None:
            self.saw_prompt = True
            self.prompt += rates.prompt_tokens_per_s * seconds
        if view.analysis.mbu is not None and view.analysis.phase not in ("idle", "unknown"):
            self.mbu_sum += view.analysis.mbu
            self.mbu_count += 1
        tree_memory = [d.memory_tree_bytes for d in snap.devices if d.kind == "gpu" and d.memory_tree_bytes is not None]
        if tree_memory:
            self.max_device_memory = max(self.max_device_memory or 0, sum(tree_memory))
        allocated = [a.torch_peak_allocated_bytes or a.torch_allocated_bytes for a in snap.agents]
        reserved = [a.torch_peak_reserved_bytes or a.torch_reserved_bytes for a in snap.agents]
        if any(v is not None for v in allocated):
            self.max_allocated = max(self.max_allocated or 0, sum(v or 0 for v in allocated))
        if any(v is not None for v in reserved):
            self.max_reserved = max(self.max_reserved or 0, sum(v or 0 for v in reserved))
        memory = view.inside_memory
        if memory is not None and memory.rss_bytes is not None:
            self.max_rss = max(self.max_rss or 0, memory.rss_bytes)
        if memory is not None and memory.weights_bytes is not None:
            self.weights = max(self.weights or 0, memory.weights_bytes)
        if view.model is not None:
            self.model_name = view.model.name
            self.flops_per_token = view.model.flops_per_token

    def summary(self) -> RunSummary:
        span = (self.last_time - self.first_time) if self.first_time is not None and self.last_time is not None else 0.0
        generation = self.generation if self.saw_generation else None
        prompt = self.prompt if self.saw_prompt else None
        latency = span / generation if generation and span > 0 else None
        rate = generation / span if generation is not None and span > 0 else None
        flops = None
        if self.flops_per_token is not None and span > 0 and (generation is not None or prompt is not None):
            flops = ((generation or 0.0) + (prompt or 0.0)) * self.flops_per_token / span
        return RunSummary(
            span_s=span, samples=self.samples, generation_tokens=generation, prompt_tokens=prompt,
            per_token_latency_s=latency, tokens_per_s=rate, flops_per_s=flops,
            peak_generation_tokens_per_s=self.peak_rate,
            mean_mbu=self.mbu_sum / self.mbu_count if self.mbu_count else None,
            max_device_memory_bytes=self.max_device_memory, max_torch_allocated_bytes=self.max_allocated,
            max_torch_reserved_bytes=self.max_reserved, model_name=self.model_name,
            flops_per_token=self.flops_per_token, max_rss_bytes=self.max_rss, weights_bytes=self.weights)


def format_summary(summary: RunSummary) -> str:
    """Plain text for the terminal after the dashboard closes (the seed's layout, done right)."""

    def gb(value: int | None) -> str:
        return "n/a" if value is None else f"{value / 1e9:.2f} GB"

    lines = ["-------Perf Summary-------"]
    lines.append(f"Watched: {summary.span_s:.1f} s, {summary.samples} samples" +
                 (f", model {summary.model_name}" if summary.model_name else ""))
    if summary.generation_tokens is None:
        lines.append("Tokens: n/a (no token counters: no engine metrics or agent)")
    else:
        lines.append(f"Tokens generated: {summary.generation_tokens:,.0f}"
                     + (f" (prompt tokens: {summary.prompt_tokens:,.0f})" if summary.prompt_tokens is not None else ""))
        lines.append("Per token latency (whole batch): " + (f"{summary.per_token_latency_s * 1e3:.2f} ms" if summary.per_token_latency_s else "n/a"))
        lines.append("Throughput: " + (f"{summary.tokens_per_s:.2f} tokens/s" if summary.tokens_per_s is not None else "n/a")
                     + (f" (peak {summary.peak_generation_tokens_per_s:.2f})" if summary.peak_generation_tokens_per_s else ""))
    if summary.flops_per_s is not None:
        lines.append(f"Compute: {summary.flops_per_s / 1e12:.3f} TFLOP/s "
                     f"(generated + prompt tokens × {summary.flops_per_token / 1e9:.2f} GFLOP/token, exact params)")
    else:
        lines.append("Compute: n/a (model unknown)" if summary.flops_per_token is None else "Compute: n/a (no tokens)")
    if summary.mean_mbu is not None:
        lines.append(f"Mean MBU while busy: {summary.mean_mbu * 100:.1f}%")
    lines.append("-------Memory Summary-------")
    lines.append(f"Max GPU memory of the process tree (NVML): {gb(summary.max_device_memory_bytes)}")
    lines.append(f"Max memory allocated (torch): {gb(summary.max_torch_allocated_bytes)}")
    lines.append(f"Max memory reserved (torch): {gb(summary.max_torch_reserved_bytes)}")
    if summary.max_rss_bytes is not None:
        lines.append(f"Max resident memory of the watched processes (agent, RSS): {gb(summary.max_rss_bytes)}")
    if summary.weights_bytes is not None:
        lines.append(f"Model weights (agent, the watched models' parameters): {gb(summary.weights_bytes)}")
    return "\n".join(lines)
