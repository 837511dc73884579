"""Quantities users type, and dtypes with quantization overhead."""

import pytest
from hypothesis import given, strategies as st

from infermon.model.dtypes import DTypeError, format_from_quantization_config, normalize_dtype, plain_format
from infermon.model.units import QuantityError, parse_bandwidth, parse_bytes, parse_count, parse_flops


@pytest.mark.parametrize("text, value", [("24e9", 24e9), ("24GB", 24e9), ("24 GB", 24e9), ("24GiB", 24 * 2**30),
                                         ("512MB", 512e6), ("0.5TB", 0.5e12)])
def test_bytes(text, value):
    assert parse_bytes(text) == pytest.approx(value)


def test_rates_and_counts():
    assert parse_bandwidth("600GB/s") == 600e9
    assert parse_bandwidth("3.35TB/s") == pytest.approx(3.35e12)
    assert parse_flops("125TFLOPS") == 125e12
    assert parse_flops("125e12") == 125e12
    assert parse_count("7B") == 7e9
    assert parse_count("7e9") == 7e9


@pytest.mark.parametrize("bad", ["", "-1", "0", "abc", "24XB", "nan", "inf"])
def test_bad_quantities_raise_our_error(bad):
    with pytest.raises(QuantityError):
        parse_bytes(bad)


@given(st.text(max_size=20))
def test_any_text_either_parses_or_raises_our_error(text):
    for parse in (parse_bytes, parse_bandwidth, parse_flops, parse_count):
        try:
            assert parse(text) > 0
        except QuantityError:
            pass


def test_dtype_spellings():
    assert normalize_dtype("bfloat16") == "bf16"
    assert normalize_dtype("torch.float16") == "fp16"
    assert normalize_dtype("FP8") == "fp8"
    with pytest.raises(DTypeError):
        normalize_dtype("fp5")


def test_int4_with_group_size_carries_scale_overhead():
    gptq = format_from_quantization_config({"quant_method": "gptq", "bits": 4, "group_size": 128, "sym": True}, "fp16")
    assert gptq.bytes_per_param() == pytest.approx(0.5 + 2 / 128)
    awq = format_from_quantization_config({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True}, "fp16")
    assert awq.bytes_per_param() == pytest.approx(0.5 + 2.5 / 128)
    assert plain_format("int4").bytes_per_param() > 0.5


def test_fp8_block_scales():
    fp8 = format_from_quantization_config({"quant_method": "fp8", "weight_block_size": [128, 128]}, "bf16")
    assert fp8.dtype == "fp8"
    assert fp8.bytes_per_param() == pytest.approx(1 + 4 / 16384)


def test_unknown_quantization_is_none():
    assert format_from_quantization_config({"quant_method": "mystery"}, "bf16") is None
