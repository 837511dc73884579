"""Engine modules: every registered engine declares all an engine must, and its command line gives parallelism.

Adding an engine is one file in probes/engines/: these tests fail until it declares everything.
"""

from __future__ import annotations

import re

import pytest

from infermon.probes.engines import CANONICAL_FIELDS, ENGINES, engine, engine_for_launcher
from infermon.probes.engines.prometheus import Exposition, parse_exposition
from infermon.probes.engines.registry import DECLARATIONS, PARALLELISM_FIELDS, parallelism
from infermon.probes.process import detect_framework, role_of, tree_parallelism
from infermon.probes.snapshot import EngineSample

EXPECTED = {"vllm", "sglang", "tgi", "llamacpp", "tensorrt-llm"}


def test_every_engine_is_registered():
    assert set(ENGINES) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_engine_module_declares_everything(name):
    module = ENGINES[name]
    missing = [d for d in DECLARATIONS if not hasattr(module, d)]
    assert not missing, f"{module.__name__} lacks {missing}"
    assert module.NAME == name and module.TITLE and module.METRIC_PREFIX
    assert module.METRICS_PATH.startswith("/")
    assert module.DEFAULT_PORTS and all(isinstance(p, int) and 0 < p < 65536 for p in module.DEFAULT_PORTS)
    assert isinstance(module.PROCESS_PATTERN, re.Pattern)
    assert all(isinstance(p, re.Pattern) and isinstance(role, str) and role for p, role in module.ROLES)
    assert module.MISSING_METRICS_HINT
    # Every canonical figure is either mapped to metric names of this engine or said to be never reported.
    for field_name in CANONICAL_FIELDS:
        names = module.METRICS.get(field_name)
        assert names or module.NEVER.get(field_name), f"{name}: {field_name} neither mapped nor explained"
        for metric in names or ():
            assert metric.startswith(module.METRIC_PREFIX), metric
    assert set(module.METRICS) <= set(CANONICAL_FIELDS), set(module.METRICS) - set(CANONICAL_FIELDS)
    assert module.INFO_PATH is None or module.INFO_PATH.startswith("/")
    assert set(module.INFO_KEYS) <= {"model_name", "version"}
    assert all(path.startswith("/") for path in module.EXTRA_READS)
    assert set(module.PARALLELISM) <= set(PARALLELISM_FIELDS)
    assert all(all(o.startswith("-") for o in options) for options in module.PARALLELISM.values())
    assert module.PARALLELISM_DEFAULT
    # The functions take what the machinery gives them.
    capacity, why = module.kv_capacity(Exposition())
    assert capacity is None and why
    sample = EngineSample(kind=name)
    assert isinstance(module.apply_extra_reads(sample, {}), EngineSample)
    assert isinstance(module.refine(sample), EngineSample)


@pytest.mark.parametrize("launcher, name", [
    ("vllm serve", "vllm"), ("VLLM::Worker_TP1", "vllm"), ("vllm.entrypoints.openai.api_server", "vllm"),
    ("sglang.launch_server", "sglang"), ("sglang::scheduler_TP0", "sglang"),
    ("text-generation-launcher --model-id", "tgi"), ("llama-server -m", "llamacpp"),
    ("trtllm-serve m", "tensorrt-llm"), ("generate.py", None), ("vllmish.py", None),
])
def test_process_patterns(launcher, name):
    module = engine_for_launcher(launcher)
    assert (module.NAME if module else None) == name


@pytest.mark.parametrize("argv, framework, degrees", [
    (("vllm", "serve", "m", "--tensor-parallel-size", "4", "--pipeline-parallel-size=2"), "vllm", (4, 2, None)),
    (("vllm", "serve", "m", "-tp", "2", "-pp", "1", "-dp", "8"), "vllm", (2, 1, 8)),
    (("python", "-m", "sglang.launch_server", "--model-path", "m", "--tp", "8", "--dp", "2"), "sglang", (8, None, 2)),
    (("python", "-m", "sglang.launch_server", "--tp-size=4", "--pp-size", "2"), "sglang", (4, 2, None)),
    (("text-generation-launcher", "--model-id", "m", "--num-shard", "2"), "tgi", (2, None, None)),
    (("trtllm-serve", "m", "--tp_size", "8", "--pp_size", "2"), "tensorrt-llm", (8, 2, None)),
    (("llama-server", "-m", "m.gguf", "-np", "4"), "llamacpp", (None, None, None)),
])
def test_parallelism_from_the_command_line(argv, framework, degrees):
    found, why = parallelism(engine(framework), argv)
    assert tuple(found[f] for f in PARALLELISM_FIELDS) == degrees
    for field_name, value in found.items():
        assert (value is None) == (field_name in why)


def test_parallelism_reasons_say_the_default_or_what_is_wrong():
    found, why = parallelism(engine("vllm"), ("vllm", "serve", "m", "-tp", "two"))
    assert found["tensor_parallel"] is None and "'two' is not a positive whole number" in why["tensor_parallel"]
    assert "default is 1" in why["pipeline_parallel"]
    _, why = parallelism(engine("tgi"), ("text-generation-launcher",))
    assert why["pipeline_parallel"] == "TGI has no pipeline-parallel option"


def test_tree_parallelism_reads_the_engines_launcher_not_its_children():
    cmdlines = [("/venv/bin/python", "/venv/bin/vllm", "serve", "m", "-tp", "2"), ("VLLM::EngineCore",),
                ("VLLM::Worker_TP0",), ("VLLM::Worker_TP1",)]
    degrees, why = tree_parallelism("vllm", cmdlines)
    assert degrees == {"tensor_parallel": 2, "pipeline_parallel": None, "data_parallel": None}
    assert set(why) == {"pipeline_parallel", "data_parallel"}
    degrees, why = tree_parallelism("python", [("python", "x.py")])
    assert degrees == dict.fromkeys(PARALLELISM_FIELDS) and set(why) == set(PARALLELISM_FIELDS)


@pytest.mark.parametrize("cmdline, role", [
    (("/venv/bin/python", "/venv/bin/vllm", "serve", "/models/m", "--port", "8000"), "API server"),
    (("VLLM::EngineCore",), "VLLM::EngineCore"),
    (("python", "-B", "-c", "from multiprocessing.resource_tracker import main;main(32)"), "resource tracker"),
    (("text-generation-router", "--port", "3000"), "router"),
    (("python", "generate.py"), None),
])
def test_roles(cmdline, role):
    assert role_of(cmdline) == role


def test_framework_detection_goes_through_the_registry():
    assert detect_framework([("trtllm-serve", "m")])[0] == "tensorrt-llm"


def test_kind_follows_the_metric_prefix():
    from infermon.probes.engines import detect_engine

    text = "# TYPE trtllm_num_requests_running gauge\ntrtllm_num_requests_running{model_name=\"m\"} 3\n"
    assert detect_engine(parse_exposition(text)) == "tensorrt-llm"
