"""The workload behind ``infermon demo``: a small Llama-style decoder with random weights,
generating continuously on the CPU (or a GPU when one is present).

It has real attention with a KV cache (grouped-query), RMSNorm, rotary embeddings and a SwiGLU
MLP, sized so that each decode step reads ~0.4 GB of weights: decode is memory-bound on a CPU.
Rounds of generation vary the number of concurrent sequences. The model carries a Hugging Face
style ``config`` so infermon's agent hands the monitor its exact dimensions.

    python -m infermon.cli.demo_workload [--seconds S] [--device cpu|cuda] [--size small|tiny]
"""

from __future__ import annotations

import argparse
import math
import random
import time

if __name__ == "__main__":
    import signal

    # Ctrl-C (which the terminal sends the whole group) ends the workload at once and without a
    # traceback, even while torch is still importing: it holds nothing worth saving.
    signal.signal(signal.SIGINT, signal.SIG_DFL)

import torch

SIZES = {
    # ~107M parameters, fp32: ~0.43 GB read per decode step.
    "small": dict(vocab_size=8192, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                  num_attention_heads=16, num_key_value_heads=4),
    # For tests: milliseconds per step.
    "tiny": dict(vocab_size=512, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2),
    # For bench/gpu_check.py: ~3.9B parameters in few, wide layers (7.8 GB in bf16), so a decode step
    # is a few large matmuls: memory-bound at batch 1, not kernel-launch-bound.
    "gpu-check": dict(vocab_size=32000, hidden_size=8192, intermediate_size=28672, num_hidden_layers=4,
                      num_attention_heads=64, num_key_value_heads=8),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
BATCHES = (1, 2, 4, 8, 4, 2)


class Config(dict):
    """Enough of a transformers config for the agent (``to_dict``) and for attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict:
        return dict(self)


class RMSNorm(torch.nn.Module):
    def __init__(self, size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        return (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight).to(x.dtype)


def rotary(x, positions, head_dim):
    half = head_dim // 2
    freqs = 1.0 / (10000 ** (torch.arange(0, half, device=x.device, dtype=torch.float32) / half))
    angles = positions[:, None].float() * freqs[None, :]
    cos, sin = angles.cos()[None, None], angles.sin()[None, None]
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).to(x.dtype)


def _attention(q, k, v, causal: bool, groups: int):
    """Grouped-query attention; without copying K and V per query head where torch can (2.5+)."""
    try:
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=groups > 1)
    except TypeError:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)


class Block(torch.nn.Module):
    def __init__(self, c: Config) -> None:
        super().__init__()
        self.heads, self.kv_heads = c.num_attention_heads, c.num_key_value_heads
        self.head_dim = c.hidden_size // c.num_attention_heads
        h, kv = c.hidden_size, self.kv_heads * self.head_dim
        self.input_layernorm = RMSNorm(h)
        self.q_proj = torch.nn.Linear(h, h, bias=False)
        self.k_proj = torch.nn.Linear(h, kv, bias=False)
        self.v_proj = torch.nn.Linear(h, kv, bias=False)
        self.o_proj = torch.nn.Linear(h, h, bias=False)
        self.post_attention_layernorm = RMSNorm(h)
        self.gate_proj = torch.nn.Linear(h, c.intermediate_size, bias=False)
        self.up_proj = torch.nn.Linear(h, c.intermediate_size, bias=False)
        self.down_proj = torch.nn.Linear(c.intermediate_size, h, bias=False)

    def forward(self, x, positions, cache):
        b, s, _ = x.shape
        y = self.input_layernorm(x)
        q = self.q_proj(y).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(y).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(y).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = rotary(q, positions, self.head_dim), rotary(k, positions, self.head_dim)
        if cache:
            k, v = torch.cat((cache[0], k), dim=2), torch.cat((cache[1], v), dim=2)
        cache[:] = [k, v]
        attn = _attention(q, k, v, s > 1, self.heads // self.kv_heads)
        x = x + self.o_proj(attn.transpose(1, 2).reshape(b, s, -1))
        y = self.post_attention_layernorm(x)
        return x + self.down_proj(torch.nn.functional.silu(self.gate_proj(y)) * self.up_proj(y))


class DemoDecoder(torch.nn.Module):
    def __init__(self, size: str = "small", dtype: str = "fp32") -> None:
        super().__init__()
        torch_dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dtype]
        self.config = Config(model_type="llama", torch_dtype=torch_dtype, tie_word_embeddings=False,
                             max_position_embeddings=4096, rms_norm_eps=1e-5,
                             _name_or_path=f"infermon-demo-{size}", **SIZES[size])
        c = self.config
        self.embed_tokens = torch.nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = torch.nn.ModuleList(Block(c) for _ in range(c.num_hidden_layers))
        self.norm = RMSNorm(c.hidden_size)
        self.lm_head = torch.nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        for p in self.parameters():
            if p.dim() > 1:
                torch.nn.init.normal_(p, std=0.02)

    def forward(self, input_ids, positions=None, caches=None):
        if positions is None:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.embed_tokens(input_ids)
        for layer, cache in zip(self.layers, caches or [[] for _ in self.layers]):
            x = layer(x, positions, cache)
        return self.lm_head(self.norm(x))


def generate_round(model: DemoDecoder, batch: int, prompt_len: int, new_tokens: int, device: str,
                   agent=None) -> None:
    """One round: a prefill of ``batch`` prompts, then ``new_tokens`` decode steps sharing a KV cache.

    With ``agent`` (infermon's agent module, running in this process), the round reports what a
    server's loop would: the requests' start, each step's tokens as they reach the host (time to
    first token, inter-token latency) and the tokens the KV cache holds."""
    caches = [[] for _ in model.layers]
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt_len), device=device)
    request = agent.request(batch, prompt_tokens=batch * prompt_len) if agent is not None else None
    logits = model(ids, torch.arange(prompt_len, device=device), caches)
    next_ids = logits[:, -1].argmax(-1, keepdim=True)
    if request is not None:
        next_ids.cpu()  # the tokens reach the host, as a server's would
        request.tokens()
        agent.kv_tokens(batch * prompt_len)
    for step in range(new_tokens - 1):
        position = torch.tensor([prompt_len + step], device=device)
        logits = model(next_ids, position, caches)
        next_ids = logits[:, -1].argmax(-1, keepdim=True)
        if request is not None:
            next_ids.cpu()
            request.tokens()
            agent.kv_tokens(batch * (prompt_len + step + 1))
    if request is not None:
        request.finish()
        agent.kv_tokens(0)  # the round's cache is dropped


def running_agent():
    """infermon's agent module when an agent runs in this process (``infermon demo`` and
    ``infermon run`` load one), else None: run alone, the workload reports nothing."""
    try:
        import infermon.probes.agent as agent
    except ImportError:
        return None
    return agent if agent.running() else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=math.inf, help="stop after this long (default: never)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--batch", type=int, default=None, help="a fixed batch instead of the varying rounds")
    parser.add_argument("--prompt", type=int, default=None, help="with --batch: prompt tokens per sequence")
    parser.add_argument("--new", type=int, default=None, help="with --batch: tokens generated per round")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = random.Random(0)
    with torch.device(args.device):
        model = DemoDecoder(args.size, args.dtype).to(DTYPES[args.dtype]).eval()
    agent = running_agent()
    if agent is not None:
        agent.watch(model)  # steps and batch from the hooks, from the first call on
    deadline = time.monotonic() + args.seconds
    round_index = 0
    with torch.inference_mode():
        while time.monotonic() < deadline:
            if args.batch:
                generate_round(model, args.batch, args.prompt or 32, args.new or 128, args.device, agent)
            else:
                batch = BATCHES[round_index % len(BATCHES)]
                generate_round(model, batch, rng.randint(16, 64), rng.randint(32, 96), args.device, agent)
            round_index += 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
