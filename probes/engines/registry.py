"""Every engine module of this package, found by name: adding an engine is adding one file.

An engine module declares, at module level (``tests/test_engine_registry.py`` checks
every registered module has all of it):

=======================  ===============================================================
``NAME``                 the framework name (``vllm``, ``tensorrt-llm``): ``EngineSample.kind``
``TITLE``                how users write it (``vLLM``)
``METRIC_PREFIX``        what starts its metric names (``vllm:``, ``tgi_``)
``METRICS_PATH``         where it serves Prometheus text (``/metrics``)
``DEFAULT_PORTS``        its HTTP ports out of the box
``PROCESS_PATTERN``      a regex over a process's launcher or title that means this engine
``ROLES``                (regex over a launcher, role) for processes that set no title
``MISSING_METRICS_HINT`` what to tell a user whose endpoint has none of its metrics
``METRICS``              canonical field → its metric names, first present wins
``NEVER``                canonical field → why this engine never reports it
``KV_CAPACITY_FAMILY``   the family the KV capacity is read from (None: not in /metrics)
``INFO_PATH``            a JSON endpoint read once for model name / version (or None)
``INFO_KEYS``            ``model_name`` / ``version`` → key in that JSON
``EXTRA_READS``          JSON paths read every tick besides the metrics (llama.cpp ``/slots``)
``PARALLELISM``          ``tensor_parallel`` / ``pipeline_parallel`` / ``data_parallel`` → its options
``PARALLELISM_DEFAULT``  why a degree not on the command line is None
``kv_capacity(expo)``    → (tokens, why)
``apply_extra_reads(sample, answers)``  the EXTRA_READS answers folded into the sample
``refine(sample)``       engine-specific corrections after the common mapping
=======================  ===============================================================

Engine modules import only ``infermon.probes.engines.prometheus`` and
``infermon.probes.snapshot`` (``tests/test_layout.py`` enforces it).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from types import ModuleType

from infermon.probes.engines.prometheus import Exposition, count_prefixed_lines, count_prefixed_samples

# Modules of this package that are machinery, not engines.
MACHINERY = frozenset({"prometheus", "registry", "mapping", "probe", "discovery"})

DECLARATIONS = ("NAME", "TITLE", "METRIC_PREFIX", "METRICS_PATH", "DEFAULT_PORTS", "PROCESS_PATTERN", "ROLES",
                "MISSING_METRICS_HINT", "METRICS", "NEVER", "KV_CAPACITY_FAMILY", "INFO_PATH", "INFO_KEYS",
                "EXTRA_READS", "PARALLELISM", "PARALLELISM_DEFAULT", "kv_capacity", "apply_extra_reads", "refine")
PARALLELISM_FIELDS = ("tensor_parallel", "pipeline_parallel", "data_parallel")


def _load() -> dict[str, ModuleType]:
    package = __name__.rsplit(".", 1)[0]
    path = importlib.import_module(package).__path__
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
        if info.name in MACHINERY or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        found[module.NAME] = module
    return found


ENGINES: dict[str, ModuleType] = _load()


def engine(name: str | None) -> ModuleType | None:
    """The engine module called ``name`` (``vllm``, ``tensorrt-llm``), or None."""
    return ENGINES.get(name or "")


def engine_for_launcher(text: str) -> ModuleType | None:
    """The engine whose process pattern matches a launcher or title (``vllm serve``, ``VLLM::Worker``)."""
    for module in ENGINES.values():
        if module.PROCESS_PATTERN.search(text):
            return module
    return None


def role_for_launcher(module: ModuleType | None, text: str) -> str | None:
    """What a process without a title does in ``module``'s tree (``API server``), from its launcher."""
    if module is None:
        return None
    for pattern, role in module.ROLES:
        if pattern.search(text):
            return role
    return None


def option_value(argv: list[str], names: tuple[str, ...]) -> str | None:
    """The value of the first of ``names`` on a command line (``--name value`` or ``--name=value``)."""
    for index, token in enumerate(argv):
        for name in names:
            if token == name and index + 1 < len(argv):
                return argv[index + 1]
            if token.startswith(name + "="):
                return token.split("=", 1)[1]
    return None


def parallelism(module: ModuleType, argv: tuple[str, ...]) -> tuple[dict[str, int | None], dict[str, str]]:
    """(degrees, why) from one command line: tensor / pipeline / data parallel, as the engine's
    options give them; None with a reason when not given (the engine default is 1) or not a number."""
    degrees: dict[str, int | None] = {}
    why: dict[str, str] = {}
    for name in PARALLELISM_FIELDS:
        options = module.PARALLELISM.get(name)
        if not options:
            degrees[name] = None
            why[name] = (module.PARALLELISM_DEFAULT if not module.PARALLELISM
                         else f"{module.TITLE} has no {name.replace('_', '-')} option")
            continue
        raw = option_value(list(argv), options)
        if raw is None:
            degrees[name] = None
            why[name] = module.PARALLELISM_DEFAULT
        elif re.fullmatch(r"[1-9][0-9]{0,5}", raw.strip()):
            degrees[name] = int(raw)
        else:
            degrees[name] = None
            why[name] = f"{options[0]} {raw!r} is not a positive whole number"
    return degrees, why


def engine_of_text(text: str) -> str | None:
    """The engine whose prefix starts the most lines of raw exposition text (cheap: no parsing)."""
    counts = {name: count_prefixed_lines(text, m.METRIC_PREFIX) for name, m in ENGINES.items()}
    best = max(counts, key=counts.get)
    return best if counts[best] else None


def detect_engine(metrics) -> str | None:
    """The engine whose prefix the most samples of a parsed exposition (or a name → samples
    mapping) carry, or None."""
    names = metrics.series if isinstance(metrics, Exposition) else metrics
    counts = {name: count_prefixed_samples(names, m.METRIC_PREFIX) for name, m in ENGINES.items()}
    best = max(counts, key=counts.get)
    return best if counts[best] else None
