"""Write a small random-weight Llama-style model (grouped-query attention) that vLLM can serve.

    .vllm-venv/bin/python tests/vllm/make_model.py OUT_DIR

Runs in vLLM's own environment (it needs transformers, tokenizers and torch). Nothing comes
from a hub: the weights are random (seeded) and the tokenizer is a byte-level BPE trained here
on text that ships with Python (the Zen of Python and standard-library docstrings). The folder
holds ``config.json``, ``model.safetensors`` and the tokenizer files; a marker file written last
says it is complete, so a second run returns at once.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

# hidden 512, 6 layers, 8 query heads sharing 2 KV heads, SwiGLU 1408, vocab 8192: 25.3M
# parameters, 101 MB in float32, so every decode step reads ~0.1 GB (memory-bound on a CPU).
SHAPE = dict(hidden_size=512, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=2,
             intermediate_size=1408, vocab_size=8192, max_position_embeddings=2048)
MARKER = ".infermon-model-complete"
SPECIAL = ["<unk>", "<s>", "</s>", "<pad>"]


def corpus() -> list[str]:
    """Local text to train the tokenizer on: deterministic for a given Python."""
    import codecs
    import importlib
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        import this  # noqa: F401  (importing it prints the Zen; its text is rot13 in this.s)

    warnings.simplefilter("ignore", DeprecationWarning)  # typing.re and friends, touched by dir()
    texts = [codecs.decode(sys.modules["this"].s, "rot13")]
    for name in ("json", "re", "os", "pathlib", "collections", "functools", "itertools", "argparse", "string",
                 "textwrap", "datetime", "decimal", "fractions", "statistics", "heapq", "bisect", "csv",
                 "logging", "subprocess", "threading", "asyncio", "typing", "dataclasses", "unittest"):
        module = importlib.import_module(name)
        texts.append(module.__doc__ or "")
        for attribute in sorted(dir(module)):
            doc = getattr(getattr(module, attribute, None), "__doc__", None)
            if isinstance(doc, str):
                texts.append(doc)
    return [t for t in texts if t.strip()]


def make_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>", model_max_length=SHAPE["max_position_embeddings"])


def make_model(folder: Path) -> Path:
    marker = folder / MARKER
    if marker.exists():
        return folder
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(SHAPE["vocab_size"])
    assert len(tokenizer) <= SHAPE["vocab_size"], len(tokenizer)
    torch.manual_seed(0)
    config = LlamaConfig(**SHAPE, rms_norm_eps=1e-5, tie_word_embeddings=False,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, torch_dtype="float32")
    model = LlamaForCausalLM(config).to(torch.float32)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    marker.write_text("complete\n")
    return folder


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_model.py OUT_DIR")
    print(make_model(Path(sys.argv[1])))
