"""A Hugging Face generate() loop on a tiny random-weight model: the 'user script' of the agent's
end-to-end tests. It writes its own count of generated tokens (up to and including each
sequence's EOS) to --count-file when it is done.

python hf_generate.py [--seconds S | --calls N] [--batch B] [--count-file FILE]
"""

import argparse
import time

import torch

from infermon.testing.hf_tiny import generated_tokens, prompts, stop_at, tiny_llama


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--calls", type=int, default=6)
    parser.add_argument("--batch", type=int, default=3)
    parser.add_argument("--new", type=int, default=24)
    parser.add_argument("--count-file", default=None)
    args = parser.parse_args()
    model = tiny_llama()
    total, call = 0, 0
    deadline = time.monotonic() + args.seconds if args.seconds else None
    with torch.no_grad():
        while (deadline is None and call < args.calls) or (deadline is not None and time.monotonic() < deadline):
            length = 6 + call % 5
            # Sequences stop early at different steps: padding follows their EOS.
            stops = [(call * 7 + row * 5) % args.new + 1 if row % 2 == 0 else None for row in range(args.batch)]
            output = model.generate(prompts(args.batch, length, seed=call), max_new_tokens=args.new,
                                    do_sample=False, logits_processor=stop_at(length, stops))
            total += generated_tokens(output, length)
            call += 1
    if args.count_file:
        with open(args.count_file, "w") as handle:
            handle.write(f"{total}\n")


if __name__ == "__main__":
    main()
