"""Tiny random-weight GGUF files written with ``gguf.GGUFWriter``, one per architecture the loader reads."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

Q = gguf.GGMLQuantizationType


def _layers_llama(arch: str, hidden: int, heads: int, kv: int, hd: int, ffn: int, experts: int) -> list[tuple[str, tuple[int, ...]]]:
    """Tensor (name, numpy shape) list of one llama-family decoder; numpy shape is (out, in)."""
    out: list[tuple[str, tuple[int, ...]]] = []
    for i in range(2):
        b = f"blk.{i}"
        out += [(f"{b}.attn_norm.weight", (hidden,)),
                (f"{b}.attn_q.weight", (heads * hd, hidden)),
                (f"{b}.attn_k.weight", (kv * hd, hidden)),
                (f"{b}.attn_v.weight", (kv * hd, hidden)),
                (f"{b}.attn_output.weight", (hidden, heads * hd)),
                (f"{b}.ffn_norm.weight", (hidden,))]
        if arch in ("qwen2", "qwen2moe"):
            out += [(f"{b}.attn_q.bias", (heads * hd,)), (f"{b}.attn_k.bias", (kv * hd,)), (f"{b}.attn_v.bias", (kv * hd,))]
        if arch in ("qwen3", "qwen3moe"):
            out += [(f"{b}.attn_q_norm.weight", (hd,)), (f"{b}.attn_k_norm.weight", (hd,))]
        if arch == "qwen2moe":
            # One shared expert with a sigmoid gate (a vector in GGUF), beside the routed ones.
            out += [(f"{b}.ffn_gate_inp_shexp.weight", (hidden,)),
                    (f"{b}.ffn_gate_shexp.weight", (2 * ffn, hidden)), (f"{b}.ffn_up_shexp.weight", (2 * ffn, hidden)),
                    (f"{b}.ffn_down_shexp.weight", (hidden, 2 * ffn))]
        if arch == "gemma2":
            out += [(f"{b}.post_attention_norm.weight", (hidden,)), (f"{b}.post_ffw_norm.weight", (hidden,))]
        if experts:
            out += [(f"{b}.ffn_gate_inp.weight", (experts, hidden)),
                    (f"{b}.ffn_gate_exps.weight", (experts, ffn, hidden)),
                    (f"{b}.ffn_up_exps.weight", (experts, ffn, hidden)),
                    (f"{b}.ffn_down_exps.weight", (experts, hidden, ffn))]
        else:
            out += [(f"{b}.ffn_gate.weight", (ffn, hidden)), (f"{b}.ffn_up.weight", (ffn, hidden)),
                    (f"{b}.ffn_down.weight", (hidden, ffn))]
    return out


def _model(arch: str, *, hidden: int = 64, heads: int = 4, kv: int = 2, ffn: int = 128, vocab: int = 100,
           experts: int = 0, used: int = 0, tied: bool = False, q_lora: int = 0, v3: bool = False):
    """(metadata keys without the arch prefix, tensor list) of a tiny model of ``arch``."""
    hd = hidden // heads
    keys: dict[str, int] = {"block_count": 2, "embedding_length": hidden, "feed_forward_length": ffn,
                            "attention.head_count": heads, "attention.head_count_kv": kv, "context_length": 256,
                            "rope.dimension_count": hd}
    tensors: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (vocab, hidden))]
    final_norm = [("output_norm.weight", (hidden,))]

    if arch in ("llama", "qwen2", "qwen3", "gemma2", "qwen2moe", "qwen3moe"):
        tensors += _layers_llama(arch, hidden, heads, kv, hd, ffn, experts)
        if experts:
            keys.update(expert_count=experts, expert_used_count=used)
        if arch in ("qwen2moe", "qwen3moe"):
            keys["expert_feed_forward_length"] = ffn
        if arch == "qwen2moe":
            keys["expert_shared_feed_forward_length"] = 2 * ffn
        if arch == "gemma2":
            keys["attention.sliding_window"] = 32
            keys["attention.key_length"] = keys["attention.value_length"] = hd
    elif arch == "phi3":
        for i in range(2):
            b = f"blk.{i}"
            tensors += [(f"{b}.attn_norm.weight", (hidden,)), (f"{b}.attn_qkv.weight", ((heads + 2 * kv) * hd, hidden)),
                        (f"{b}.attn_output.weight", (hidden, hidden)), (f"{b}.ffn_norm.weight", (hidden,)),
                        (f"{b}.ffn_up.weight", (2 * ffn, hidden)), (f"{b}.ffn_down.weight", (hidden, ffn))]
    elif arch == "gpt2":
        keys["attention.head_count_kv"] = heads
        keys["context_length"] = 32
        tensors.append(("position_embd.weight", (32, hidden)))
        for i in range(2):
            b = f"blk.{i}"
            tensors += [(f"{b}.attn_norm.weight", (hidden,)), (f"{b}.attn_norm.bias", (hidden,)),
                        (f"{b}.attn_qkv.weight", (3 * hidden, hidden)), (f"{b}.attn_qkv.bias", (3 * hidden,)),
                        (f"{b}.attn_output.weight", (hidden, hidden)), (f"{b}.attn_output.bias", (hidden,)),
                        (f"{b}.ffn_norm.weight", (hidden,)), (f"{b}.ffn_norm.bias", (hidden,)),
                        (f"{b}.ffn_up.weight", (ffn, hidden)), (f"{b}.ffn_up.bias", (ffn,)),
                        (f"{b}.ffn_down.weight", (hidden, ffn)), (f"{b}.ffn_down.bias", (hidden,))]
        final_norm.append(("output_norm.bias", (hidden,)))
    elif arch == "falcon":
        # Falcon-7B layout: multi-query, one LayerNorm with bias per layer, parallel attention + MLP.
        keys["attention.head_count_kv"] = 1
        for i in range(2):
            b = f"blk.{i}"
            tensors += [(f"{b}.attn_norm.weight", (hidden,)), (f"{b}.attn_norm.bias", (hidden,)),
                        (f"{b}.attn_qkv.weight", ((heads + 2) * hd, hidden)),
                        (f"{b}.attn_output.weight", (hidden, hidden)),
                        (f"{b}.ffn_up.weight", (ffn, hidden)), (f"{b}.ffn_down.weight", (hidden, ffn))]
        final_norm.append(("output_norm.bias", (hidden,)))
    elif arch == "deepseek2":
        kv_lora, rope, nope, v, e_ffn = 32, 8, 16, 16, 32
        keys.update({"attention.head_count_kv": heads, "attention.key_length": nope + rope,
                     "attention.value_length": v, "rope.dimension_count": rope, "attention.kv_lora_rank": kv_lora,
                     "expert_count": experts, "expert_used_count": used, "expert_shared_count": 1,
                     "expert_feed_forward_length": e_ffn, "leading_dense_block_count": 1})
        if q_lora:
            keys["attention.q_lora_rank"] = q_lora
        for i in range(2):
            b = f"blk.{i}"
            tensors += [(f"{b}.attn_norm.weight", (hidden,)), (f"{b}.ffn_norm.weight", (hidden,)),
                        (f"{b}.attn_kv_a_mqa.weight", (kv_lora + rope, hidden)),
                        (f"{b}.attn_kv_a_norm.weight", (kv_lora,)),
                        (f"{b}.attn_kv_b.weight", (heads * (nope + v), kv_lora)),
                        (f"{b}.attn_output.weight", (hidden, heads * v))]
            if q_lora:
                tensors += [(f"{b}.attn_q_a.weight", (q_lora, hidden)), (f"{b}.attn_q_a_norm.weight", (q_lora,)),
                            (f"{b}.attn_q_b.weight", (heads * (nope + rope), q_lora))]
            else:
                tensors.append((f"{b}.attn_q.weight", (heads * (nope + rope), hidden)))
            if i == 0:
                tensors += [(f"{b}.ffn_gate.weight", (ffn, hidden)), (f"{b}.ffn_up.weight", (ffn, hidden)),
                            (f"{b}.ffn_down.weight", (hidden, ffn))]
            else:
                tensors += [(f"{b}.ffn_gate_inp.weight", (experts, hidden)),
                            (f"{b}.ffn_gate_exps.weight", (experts, e_ffn, hidden)),
                            (f"{b}.ffn_up_exps.weight", (experts, e_ffn, hidden)),
                            (f"{b}.ffn_down_exps.weight", (experts, hidden, e_ffn)),
                            (f"{b}.ffn_gate_shexp.weight", (e_ffn, hidden)),
                            (f"{b}.ffn_up_shexp.weight", (e_ffn, hidden)),
                            (f"{b}.ffn_down_shexp.weight", (hidden, e_ffn))]
                if v3:
                    tensors.append((f"{b}.exp_probs_b.bias", (experts,)))
    else:  # pragma: no cover - a test typo
        raise ValueError(arch)

    tensors += final_norm
    if not tied:
        tensors.append(("output.weight", (vocab, hidden)))
    return keys, tensors


def write_gguf(path: Path, arch: str = "llama", *, dtype: Q = Q.F16, omit: tuple[str, ...] = (),
               extra: tuple[tuple[str, tuple[int, ...]], ...] = (), name: str | None = "tiny-test",
               file_type: int | None = None, split_max_tensors: int = 0, types: dict[str, Q] | None = None,
               **shape) -> dict:
    """Write a tiny random-weight GGUF; return what was written (elements, bytes, tensor names, bytes per tensor).

    1-D tensors (norms, biases) are F32 as in real GGUF files; matrices use ``dtype``, or
    ``types[name]`` for the tensors named there (a K-quant mix, say). Types the ``gguf``
    package cannot quantize (K-quants, i-quants) are written as random blocks of their
    exact stored size: the loader reads sizes and types, never values.
    """
    keys, tensors = _model(arch, **shape)
    tensors = tensors + list(extra)
    rng = np.random.default_rng(0)
    sizes: dict[str, int] = {}
    writer = gguf.GGUFWriter(str(path), arch, split_max_tensors=split_max_tensors)
    if name is not None:
        writer.add_name(name)
    for key, value in keys.items():
        if key not in omit:
            writer.add_uint32(f"{arch}.{key}", int(value))
    if file_type is not None:
        writer.add_file_type(file_type)
    writer.add_tokenizer_model("llama")
    writer.add_token_list([f"tok{i}" for i in range(shape.get("vocab", 100))])
    elements = stored = 0
    for tname, tshape in tensors:
        data = rng.standard_normal(tshape).astype(np.float32) * 0.02
        elements += data.size
        kind = (types or {}).get(tname, dtype)
        if len(tshape) == 1 or kind == Q.F32:
            writer.add_tensor(tname, data)
            nbytes = data.nbytes
        elif kind == Q.F16:
            half = data.astype(np.float16)
            writer.add_tensor(tname, half)
            nbytes = half.nbytes
        else:
            try:
                packed = gguf.quantize(data, kind)
            except NotImplementedError:
                packed = rng.integers(0, 256, gguf.quant_shape_to_byte_shape(tshape, kind), dtype=np.uint8)
            # The writer turns the uint8 byte shape back into the element shape itself.
            writer.add_tensor(tname, packed, raw_dtype=kind)
            nbytes = packed.nbytes
        stored += nbytes
        sizes[tname] = nbytes
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"elements": elements, "bytes": stored, "names": {t for t, _ in tensors}, "sizes": sizes}


