"""`infermon calc` as a user runs it: the table, the JSON shape, and one-line errors."""

import json
import subprocess
import sys

import pytest

MODEL_KEYS = {"name", "params_total", "params_active", "params_active_without_embedding", "weight_bytes",
              "kv_bytes_per_token", "flops_per_token", "attention"}
GPU_KEYS = {"name", "count", "memory_bytes", "bandwidth_bytes_per_s", "peak_flops"}
CEILING_KEYS = {"ops_per_byte", "free_bytes_after_weights", "kv_budget_bytes", "kv_capacity_tokens", "max_sequences",
                "weights_time_per_token_s", "decode_step_time_s", "decode_tokens_per_s", "prefill_time_per_token_s",
                "critical_batch", "bound"}
PARALLEL_KEYS = {"tp", "pp", "dp", "gpus", "kv_heads_per_gpu", "layers_per_gpu", "weight_bytes_per_gpu",
                 "free_bytes_per_gpu", "kv_budget_bytes_per_gpu", "kv_bytes_per_token_per_gpu"}


def test_json_has_exactly_the_documented_shape(cli):
    data = cli("calc", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--json").json()
    assert set(data) == {"model", "gpu", "ceilings", "parallel", "warnings", "notes", "why"}
    assert data["warnings"] == [] and data["notes"] == []
    assert data["why"] == {"ceilings.max_sequences": "no --context given"}
    assert set(data["model"]) == MODEL_KEYS
    assert set(data["parallel"]) == PARALLEL_KEYS
    assert set(data["gpu"]) == GPU_KEYS
    assert set(data["ceilings"]) == CEILING_KEYS
    assert data["ceilings"]["max_sequences"] is None
    assert data["model"]["params_total"] == 8_030_261_248
    assert data["model"]["kv_bytes_per_token"] == 131072
    assert data["gpu"]["name"] == "NVIDIA H100 80GB HBM3"


def test_json_optional_blocks(cli):
    data = cli("calc", "--model", "llama-3.1-8b", "--gpu", "a10", "--context", "2048", "--prompt-tokens", "512",
               "--output-tokens", "128", "--tokens-per-s", "30", "--json").json()
    assert set(data["generation"]) == {"prefill_time_s", "total_time_s"}
    assert set(data["achieved"]) == {"bandwidth_bytes_per_s", "flops_per_s", "mbu", "mfu"}
    assert 0 < data["achieved"]["mbu"] < 1
    assert data["generation"]["total_time_s"] > data["generation"]["prefill_time_s"] > 0


def test_table_names_every_figure(cli):
    result = cli("calc", "--model", "mixtral-8x7b", "--gpu", "NVIDIA A100-SXM4-80GB", "--gpus", "2", "--context", "4096")
    assert result.status == 0, result.err
    for label in ("parameters, total", "parameters, active", "weight bytes", "KV bytes per token", "FLOPs per token",
                  "ops:byte ridge", "KV budget", "KV capacity", "sequences that fit", "time per token floor",
                  "step time", "decode tokens/s", "critical batch", "bound", "time per prompt token", "2 × NVIDIA"):
        assert label in result.out, label
    assert "46,702,792,704" in result.out


def test_dtype_and_kv_dtype_change_the_figures(cli):
    bf16 = cli("calc", "--model", "llama-3.1-8b", "--gpu", "h100", "--json").json()
    fp8 = cli("calc", "--model", "llama-3.1-8b", "--gpu", "h100", "--dtype", "fp8", "--kv-dtype", "fp8", "--json").json()
    assert fp8["model"]["weight_bytes"] == pytest.approx(bf16["model"]["weight_bytes"] / 2)
    assert fp8["model"]["kv_bytes_per_token"] == bf16["model"]["kv_bytes_per_token"] / 2
    assert fp8["gpu"]["peak_flops"] == pytest.approx(2 * bf16["gpu"]["peak_flops"])


def test_custom_gpu_from_flags(cli):
    data = cli("calc", "--model", "llama-2-7b", "--gpu-memory", "24GB", "--gpu-bandwidth", "600GB/s",
               "--gpu-flops", "125TFLOPS", "--json").json()
    assert data["ceilings"]["ops_per_byte"] == pytest.approx(208.333, abs=1e-3)


def test_override_one_figure_of_a_named_gpu(cli):
    data = cli("calc", "--model", "llama-2-7b", "--gpu", "a10", "--gpu-bandwidth", "300e9", "--json").json()
    assert data["gpu"]["bandwidth_bytes_per_s"] == 300e9
    assert data["gpu"]["memory_bytes"] == 23_028 * 2**20


@pytest.mark.parametrize("args, message", [
    (["--model", "nope-model", "--gpu", "a10"], "unknown model"),
    (["--model", "llama-2-7b", "--gpu", "a1O"], "unknown GPU"),
    (["--model", "llama-2-7b", "--gpu", "a10", "--dtype", "fp5"], "unknown dtype"),
    (["--model", "llama-2-7b", "--gpu", "a10", "--batch", "0"], "--batch must be a positive integer"),
    (["--model", "llama-2-7b", "--gpu", "a10", "--context", "-5"], "--context"),
    (["--model", "llama-2-7b", "--gpu", "a10", "--params", "0"], "--params"),
    (["--model", "llama-2-7b", "--gpu", "a10", "--memory-utilization", "1.5"], "memory utilization"),
    (["--model", "llama-2-7b", "--gpu-memory", "24GB"], "--gpu-bandwidth"),
    (["--gpu", "a10"], "--model is required"),
    (["--model", "/no/such/config.json", "--gpu", "a10"], "no such file"),
])
def test_bad_input_is_one_line_and_exit_2(cli, args, message):
    result = cli("calc", *args)
    assert result.status == 2
    assert message in result.err
    assert result.err.count("\n") == 1
    assert "Traceback" not in result.err
    assert result.out == ""


def test_malformed_config_file(cli, tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{broken")
    result = cli("calc", "--model", str(path), "--gpu", "a10")
    assert result.status == 2 and "malformed JSON" in result.err and result.err.count("\n") == 1


def test_unknown_model_type_warns_but_computes(cli, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "zeta", "hidden_size": 1024, "num_hidden_layers": 4,
                                "num_attention_heads": 8, "vocab_size": 1000, "intermediate_size": 4096}))
    result = cli("calc", "--model", str(path), "--gpu", "l4")
    assert result.status == 0
    assert "warning: unknown model_type 'zeta'" in result.out


def test_lists(cli):
    gpus = cli("calc", "--list-gpus")
    assert gpus.status == 0 and "NVIDIA H200" in gpus.out
    assert "NVML" in gpus.out and "81,559" in gpus.out and "143,771" in gpus.out
    assert "* no NVML figure known" in gpus.out  # MI325X keeps its datasheet size, marked
    models = cli("calc", "--list-models")
    assert models.status == 0 and "deepseek-v3" in models.out and "MLA" in models.out


def test_installed_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "infermon.cli.main", "calc", "--model", "gpt2", "--gpu", "t4", "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"]["params_total"] == 124_439_808


def test_context_zero_is_an_empty_cache(cli):
    """Every decode starts from an empty cache: --context 0 is the weights-only step, not an error."""
    empty = cli("calc", "--model", "llama-2-7b", "--gpu", "a10", "--context", "0", "--json")
    assert empty.status == 0, empty.err
    data = empty.json()
    none = cli("calc", "--model", "llama-2-7b", "--gpu", "a10", "--json").json()
    assert data["ceilings"]["decode_tokens_per_s"] == none["ceilings"]["decode_tokens_per_s"]
    assert data["ceilings"]["decode_step_time_s"] == data["ceilings"]["weights_time_per_token_s"]
    assert data["ceilings"]["max_sequences"] is None
    assert data["model"]["attention"]["flops_per_token"] == 0
    table = cli("calc", "--model", "llama-2-7b", "--gpu", "a10", "--context", "0")
    assert table.status == 0 and "context 0" in table.out


def test_quantized_gguf_time_per_token_is_the_files_bytes(cli, tmp_path):
    """A Q4_0 GGUF whose embedding dominates: positive time per token from the file's own bytes."""
    import gguf
    from infermon.testing.gguf_factory import Q, write_gguf

    path = tmp_path / "wide.gguf"
    written = write_gguf(path, dtype=Q.Q4_0, vocab=8192, file_type=int(gguf.LlamaFileType.MOSTLY_Q4_0))
    data = cli("calc", "--model", str(path), "--gpu", "a10", "--json").json()
    embd = written["sizes"]["token_embd.weight"]
    read = written["bytes"] - embd + embd / 8192
    assert data["model"]["weight_bytes"] == written["bytes"]
    assert data["ceilings"]["weights_time_per_token_s"] == pytest.approx(read / 600e9)
    assert data["ceilings"]["decode_tokens_per_s"] > 0


def test_table_says_the_memory_is_nvmls(cli):
    out = cli("calc", "--model", "llama-3.1-8b", "--gpu", "h100").out
    assert "85.5 GB" in out and "as NVML reports it: 81,559 MiB" in out
