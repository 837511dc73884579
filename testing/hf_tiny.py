"""Tiny random-weight Hugging Face models built from a config (no download), and the script-side
clocks and counts the agent's figures are checked against."""

from __future__ import annotations

import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.generation.logits_process import LogitsProcessor, LogitsProcessorList
from transformers.generation.streamers import BaseStreamer

EOS, PAD, BOS = 3, 0, 1
VOCAB = 256


def tiny_llama(seed: int = 0, layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         eos_token_id=EOS, pad_token_id=PAD, bos_token_id=BOS)
    config._name_or_path = "tiny-llama"
    return LlamaForCausalLM(config).eval()


def tiny_gpt2(seed: int = 1) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=1024,
                        eos_token_id=EOS, pad_token_id=PAD, bos_token_id=BOS)
    config._name_or_path = "tiny-gpt2"
    return GPT2LMHeadModel(config).eval()


def prompts(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(4, VOCAB, (batch, length), generator=generator)


class StopAt(LogitsProcessor):
    """Sequence i emits EOS as its ``stops[i]``-th new token (None: never), and no EOS before."""

    def __init__(self, prompt_length: int, stops):
        self.prompt_length, self.stops = prompt_length, list(stops)

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_length
        for row, stop in enumerate(self.stops):
            if stop is not None and step == stop - 1:
                scores[row, :] = -1e9
                scores[row, EOS] = 0.0
            else:
                scores[row, EOS] = -1e9
        return scores


def stop_at(prompt_length: int, stops) -> LogitsProcessorList:
    return LogitsProcessorList([StopAt(prompt_length, stops)])


def generated_tokens(output: torch.Tensor, prompt_length: int) -> int:
    """The script's own count, by the convention the agent states: a sequence's generated tokens
    run up to and including its first EOS; what follows (padding) is not generated."""
    total = 0
    for row in output[:, prompt_length:].tolist():
        total += row.index(EOS) + 1 if EOS in row else len(row)
    return total


class Clock(BaseStreamer):
    """A streamer that notes when each step's tokens reach it (perf_counter): the script's clock."""

    def __init__(self):
        self.times: list[float] = []
        self.prompt_seen = False

    def put(self, value):
        if not self.prompt_seen:  # generate() first hands the streamer the prompt
            self.prompt_seen = True
            return
        self.times.append(time.perf_counter())

    def end(self):
        pass


def word_tokenizer():
    """A word-level tokenizer over the tiny vocabulary, built in memory (for TextIteratorStreamer)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel({f"w{i}": i for i in range(VOCAB)}, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="w0", pad_token="w0",
                                   eos_token=f"w{EOS}", bos_token=f"w{BOS}")
