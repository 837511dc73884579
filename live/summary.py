"""The run's perf summary: the seed's "Perf Summary", computed from what was watched.

Tokens are the sum of the counters' own increases (an engine restart does not subtract; a source
that published late adds its tokens when it publishes), so the totals equal what the source
counted. Compute is the modeled FLOP/s of each interval (the same arithmetic every view shows),
weighted by the interval's length; bytes are kept apart from FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    max_rss_bytes: int | None = None
    model_name: str | None = None
    flops_per_token: float | None = None
    token_source: str | None = None
    weights_bytes: int | None = None


class SummaryAccumulator:
    """Fed once per tick by the derivation layer; :meth:`summary` is the run so far."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.first_time: float | None = None
        self.last_time: float | None = None
        self.samples = 0
        self.generation: float | None = None
        self.prompt: float | None = None
        self.peak_rate: float | None = None
        self.mbu_sum = 0.0
        self.mbu_count = 0
        self.max_device_memory: int | None = None
        self.max_allocated: int | None = None
        self.max_reserved: int | None = None
        self.max_rss: int | None = None
        self.model_name: str | None = None
        self.flops_per_token: float | None = None
        self.token_source: str | None = None
        self.flops_sum: float | None = None
        self.weights: int | None = None

    @staticmethod
    def _max(current: int | float | None, value: int | float | None):
        if value is None:
            return current
        return value if current is None else max(current, value)

    def add(self, monotonic: float, *, generation_delta: float | None, prompt_delta: float | None,
            generation_rate: float | None, mbu: float | None, busy: bool, device_memory: int | None,
            torch_allocated: int | None, torch_reserved: int | None, rss: int | None, model_name: str | None,
            flops_per_token: float | None, token_source: str | None, flops: float | None = None,
            weights: int | None = None) -> None:
        if self.first_time is None:
            self.first_time = monotonic
        if flops is not None and self.last_time is not None:
            # Time-weighted: the modeled FLOP/s of each interval, over that interval.
            self.flops_sum = (self.flops_sum or 0.0) + flops * max(0.0, monotonic - self.last_time)
        self.last_time = monotonic
        self.samples += 1
        if generation_delta is not None:
            self.generation = (self.generation or 0.0) + generation_delta
        if prompt_delta is not None:
            self.prompt = (self.prompt or 0.0) + prompt_delta
        self.peak_rate = self._max(self.peak_rate, generation_rate)
        if mbu is not None and busy:
            self.mbu_sum += mbu
            self.mbu_count += 1
        self.max_device_memory = self._max(self.max_device_memory, device_memory)
        self.max_allocated = self._max(self.max_allocated, torch_allocated)
        self.max_reserved = self._max(self.max_reserved, torch_reserved)
        self.max_rss = self._max(self.max_rss, rss)
        self.weights = self._max(self.weights, weights)
        if model_name is not None:
            self.model_name, self.flops_per_token = model_name, flops_per_token
        if token_source is not None:
            self.token_source = token_source

    def summary(self) -> RunSummary:
        span = (self.last_time - self.first_time) if self.first_time is not None and self.last_time is not None else 0.0
        generation, prompt = self.generation, self.prompt
        latency = span / generation if generation and span > 0 else None
        rate = generation / span if generation is not None and span > 0 else None
        flops = self.flops_sum / span if self.flops_sum is not None and span > 0 else None
        return RunSummary(
            span_s=span, samples=self.samples, generation_tokens=generation, prompt_tokens=prompt,
            per_token_latency_s=latency, tokens_per_s=rate, flops_per_s=flops,
            peak_generation_tokens_per_s=self.peak_rate,
            mean_mbu=self.mbu_sum / self.mbu_count if self.mbu_count else None,
            max_device_memory_bytes=self.max_device_memory, max_torch_allocated_bytes=self.max_allocated,
            max_torch_reserved_bytes=self.max_reserved, max_rss_bytes=self.max_rss, model_name=self.model_name,
            flops_per_token=self.flops_per_token, token_source=self.token_source, weights_bytes=self.weights)


def format_summary(summary: RunSummary | None) -> str:
    """Plain text for the terminal after the dashboard closes (the seed's layout, done right)."""
    if summary is None:
        return "-------Perf Summary-------\nNo samples were taken."

    def gb(value: int | None) -> str:
        return "n/a" if value is None else f"{value / 1e9:.2f} GB"

    lines = ["-------Perf Summary-------"]
    lines.append(f"Watched: {summary.span_s:.1f} s, {summary.samples} samples" +
                 (f", model {summary.model_name}" if summary.model_name else ""))
    if summary.generation_tokens is None:
        lines.append("Tokens: n/a (no token counters: no engine metrics or agent)")
    else:
        counted = f" (counted by {summary.token_source})" if summary.token_source else ""
        lines.append(f"Tokens generated: {summary.generation_tokens:,.0f}"
                     + (f", prompt tokens: {summary.prompt_tokens:,.0f}" if summary.prompt_tokens is not None else "")
                     + counted)
        lines.append("Per token latency (whole batch): " + (f"{summary.per_token_latency_s * 1e3:.2f} ms" if summary.per_token_latency_s else "n/a"))
        lines.append("Throughput: " + (f"{summary.tokens_per_s:.2f} tokens/s" if summary.tokens_per_s is not None else "n/a")
                     + (f" (peak {summary.peak_generation_tokens_per_s:.2f})" if summary.peak_generation_tokens_per_s else ""))
    if summary.flops_per_s is not None:
        lines.append(f"Compute: {summary.flops_per_s / 1e12:.3f} TFLOP/s modeled "
                     f"({summary.flops_per_token / 1e9:.2f} GFLOP per generated token from the exact parameter "
                     "count, attention included; prompt tokens without the LM head)")
    else:
        lines.append("Compute: n/a (model unknown)" if summary.flops_per_token is None else "Compute: n/a (no tokens)")
    if summary.mean_mbu is not None:
        lines.append(f"Mean MBU while busy: {summary.mean_mbu * 100:.1f}%")
    lines.append("-------Memory Summary-------")
    lines.append(f"Max GPU memory of the process tree (NVML): {gb(summary.max_device_memory_bytes)}")
    lines.append(f"Max memory allocated (torch): {gb(summary.max_torch_allocated_bytes)}")
    lines.append(f"Max memory reserved (torch): {gb(summary.max_torch_reserved_bytes)}")
    lines.append(f"Max resident memory of the process tree (host): {gb(summary.max_rss_bytes)}")
    if summary.weights_bytes is not None:
        lines.append(f"Model weights (the watched models' parameters, agent): {gb(summary.weights_bytes)}")
    return "\n".join(lines)
