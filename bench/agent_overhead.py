"""The agent's cost to the process it watches: the same CPU generation loop with and without it.

The demo's Llama-style decoder (random weights, fp32, on the CPU) generates in blocks of decode
steps; blocks alternate between the agent off and the agent on (started, model watched, publishing
every interval, the loop reporting its tokens and KV as `infermon demo` does), so drift in the
machine's speed hits both alike. Reports tokens/s of each and the change, with the spread of the
per-pair differences; then what the agent adds per forward call and per token of Hugging Face
generate(), timed alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time


def measure(pairs: int = 8, steps: int = 40, size: str = "small", batch: int = 4, interval_s: float = 1.0) -> dict:
    import torch

    import infermon.probes.agent as agent
    from infermon.cli.demo_workload import DemoDecoder

    runtime = tempfile.mkdtemp()
    os.chmod(runtime, 0o700)
    os.environ["XDG_RUNTIME_DIR"] = runtime
    torch.manual_seed(0)
    model = DemoDecoder(size).eval()

    def block(report: bool = False) -> float:
        """Decode steps/s × batch; with ``report``, the loop also reports what ``infermon demo``
        does each step (its tokens, the KV tokens held)."""
        caches = [[] for _ in model.layers]
        ids = torch.randint(0, model.config.vocab_size, (batch, 16))
        logits = model(ids, torch.arange(16), caches)
        request = agent.request(batch, prompt_tokens=batch * 16) if report else None
        began = time.perf_counter()
        for step in range(steps):
            logits = model(logits[:, -1].argmax(-1, keepdim=True), torch.tensor([16 + step]), caches)
            if request is not None:
                request.tokens()
                agent.kv_tokens(batch * (17 + step))
        return batch * steps / (time.perf_counter() - began)

    with torch.inference_mode():
        block()  # warm up
        without, with_agent = [], []
        for pair in range(pairs):
            order = (False, True) if pair % 2 == 0 else (True, False)
            for enabled in order:
                if enabled:
                    agent.start(interval_s)
                    agent.watch(model)
                    with_agent.append(block(report=True))
                    agent.stop()
                else:
                    without.append(block())
        hook_us = _hook_cost_us(agent)
        generate_us = _generate_cost_us(agent)
    differences = [(w - o) / o * 100 for w, o in zip(with_agent, without)]
    step_s = batch / statistics.median(without)
    return {
        "hook_cost_us_per_step": hook_us,
        "hook_cost_percent_of_step": hook_us * 1e-6 / step_s * 100,
        "generate_cost_us_per_token": generate_us,
        "generate_cost_percent_of_step": generate_us * 1e-6 / step_s * 100 if generate_us is not None else None,
        "standard_error_percent": statistics.pstdev(differences) / len(differences) ** 0.5,
        "agent_overhead_percent": -statistics.median(differences),
        "spread_percent": statistics.pstdev(differences),
        "tokens_per_s_without": statistics.median(without),
        "tokens_per_s_with": statistics.median(with_agent),
        "pairs": pairs, "steps_per_block": steps, "batch": batch, "model": f"demo-{size}",
        "threads": torch.get_num_threads(),
    }


def _hook_cost_us(agent) -> float:
    """What the hook adds to one forward call (µs): a trivial module called 20,000 times with and
    without it, best of 5. Precise where the A/B test drowns in the machine's noise."""
    import torch

    class Identity(torch.nn.Module):
        def forward(self, input_ids):
            return input_ids

    module, ids = Identity(), torch.zeros(4, 1, dtype=torch.long)

    def timed() -> float:
        best = float("inf")
        for _ in range(5):
            began = time.perf_counter()
            for _ in range(20_000):
                module(ids)
            best = min(best, time.perf_counter() - began)
        return best / 20_000

    bare = timed()
    agent.start(60.0)
    agent.watch(module)
    hooked = timed()
    agent.stop()
    return max(0.0, (hooked - bare) * 1e6)


def _generate_cost_us(agent) -> float | None:
    """What the agent adds per generated token inside Hugging Face ``generate()`` (µs), timed
    alone as the hook cost is: a trivial module that returns what a transformers model returns (its
    logits and a DynamicCache of two layers), called 20,000 times with and without the forward
    hook, plus the wrapped stopping criteria and loop check that run once per token. Best of 5.
    None without transformers."""
    try:
        import torch
        from transformers.cache_utils import DynamicCache
        from transformers.generation.stopping_criteria import MaxLengthCriteria, StoppingCriteriaList
        from transformers.generation.utils import GenerationMixin
        from transformers.modeling_outputs import CausalLMOutputWithPast
    except ImportError:
        return None
    import dataclasses

    cache = DynamicCache()
    for layer in range(2):
        cache.update(torch.zeros(2, 1, 8, 4), torch.zeros(2, 1, 8, 4), layer)
    field = "cache" if "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)} else "past_key_values"
    output = CausalLMOutputWithPast(logits=torch.zeros(2, 1, 4), **{field: cache})

    class Step(torch.nn.Module):
        def forward(self, input_ids):
            return output

    module, ids = Step(), torch.zeros(2, 1, dtype=torch.long)
    criteria, longer = StoppingCriteriaList([MaxLengthCriteria(10**9)]), torch.zeros(2, 9, dtype=torch.long)
    check = GenerationMixin._has_unfinished_sequences

    def timed(step) -> float:
        best = float("inf")
        for _ in range(5):
            began = time.perf_counter()
            for _ in range(20_000):
                step()
            best = min(best, time.perf_counter() - began)
        return best / 20_000

    def token() -> None:
        module(input_ids=ids)
        criteria(longer, None)
        check(module, False, False, None)

    bare = timed(token)
    agent.start(60.0)
    agent.watch(module)
    check = GenerationMixin._has_unfinished_sequences  # the agent's wrapper now
    hooked = timed(token)
    agent.stop()
    return max(0.0, (hooked - bare) * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.pairs, args.steps)
    if args.json:
        print(json.dumps(result))
        return
    print(f"agent hook: {result['hook_cost_us_per_step']:.1f} µs per forward call = "
          f"{result['hook_cost_percent_of_step']:.3f}% of one decode step")
    if result["generate_cost_us_per_token"] is not None:
        print(f"agent inside generate(): {result['generate_cost_us_per_token']:.1f} µs per token (hook reading the "
              f"returned cache, stop record, loop mark) = {result['generate_cost_percent_of_step']:.3f}% of one "
              "decode step of the demo model")
    print(f"agent overhead A/B: {result['agent_overhead_percent']:+.2f}% of tokens/s "
          f"(± {result['standard_error_percent']:.2f}% standard error; spread ±{result['spread_percent']:.2f}%; "
          f"{result['tokens_per_s_without']:.1f} → {result['tokens_per_s_with']:.1f} tokens/s; {result['pairs']} "
          f"interleaved pairs of {result['steps_per_block']} decode steps at batch {result['batch']}, "
          f"{result['model']} fp32 on {result['threads']} CPU threads)")


if __name__ == "__main__":
    sys.exit(main())
