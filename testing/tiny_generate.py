"""A tiny random-weight decoder generating on the CPU: the 'user script' of the agent tests.

python tiny_generate.py [--seconds S] [--batch B] [--manual] [--no-watch]
Without --manual it relies on the agent's hooks (watched via infermon.probes.agent when
importable, or only the automatic ones under `infermon run`); with --manual it counts tokens
itself through agent.count_tokens.
"""

import argparse
import time

import torch


class TinyDecoder(torch.nn.Module):
    def __init__(self, vocab=256, hidden=128, layers=2):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, hidden)
        self.blocks = torch.nn.ModuleList(torch.nn.Linear(hidden, hidden) for _ in range(layers))
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, input_ids):
        x = self.embed(input_ids)
        for block in self.blocks:
            x = torch.relu(block(x))
        return self.head(x)


def generate(model, batch, prompt_len, new_tokens):
    ids = torch.randint(0, 256, (batch, prompt_len))
    logits = model(ids)                       # prefill: [B, S]
    for _ in range(new_tokens - 1):
        next_ids = logits[:, -1].argmax(-1, keepdim=True)
        logits = model(next_ids)              # decode: [B, 1]
    return logits


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--watch", action="store_true", help="call agent.watch(model) explicitly")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = TinyDecoder().eval()
    if args.watch:
        try:
            import infermon_agent as agent  # under `infermon run`
        except ImportError:
            import infermon.probes.agent as agent
        agent.watch(model)
    deadline = time.monotonic() + args.seconds
    with torch.no_grad():
        while time.monotonic() < deadline:
            generate(model, args.batch, 16, 32)
            time.sleep(0.01)


if __name__ == "__main__":
    main()
