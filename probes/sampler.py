"""One tick of every probe → one :class:`Snapshot`.

The sampler owns the probes and runs them in turn; it is driven by whoever
needs snapshots (``--once``, ``--record``, the TUI's sampler thread). It never
raises for anything the environment does: each part degrades with a reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from infermon.probes.process import ProcessProbe
from infermon.probes.snapshot import EngineSample, Snapshot

# While no metrics endpoint answers, look again this often (servers take a while to start).
REDISCOVER_S = 10.0


@dataclass(frozen=True)
class SamplerConfig:
    """What to watch and how. ``interval_s`` also bounds every network wait."""

    pid: int
    interval_s: float = 1.0
    metrics_url: str | None = None
    host_overrides: dict[str, float] = field(default_factory=dict)
    allow_calibration: bool = True


class Sampler:
    """Runs the process, NVML, engine and host probes once per :meth:`tick`."""

    def __init__(
        self,
        config: SamplerConfig,
        nvml: Any = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        engine_probe_factory: Callable[..., Any] | None = None,
    ) -> None:
        from infermon.probes.nvml import NvmlProbe

        self.config = config
        self._clock = clock
        self._wall = wall
        self.process = ProcessProbe(config.pid)  # raises TargetError for a bad pid: the caller reports it
        self.nvml = NvmlProbe(nvml)
        self.nvml.start()
        self._engine_factory = engine_probe_factory
        self._engine = None
        self._engine_why: str | None = None
        self._last_discovery = -1e9
        self._host = None
        self._executor = None

    @property
    def engine_timeout_s(self) -> float:
        """Never wait on an endpoint longer than most of one interval (and never more than 2 s)."""
        return max(0.2, min(2.0, 0.8 * self.config.interval_s))

    def _engine_probe(self, ports: tuple[int, ...], framework: str):
        from infermon.probes.engines import EngineProbe, discover

        factory = self._engine_factory or EngineProbe
        if self._engine is not None:
            return self._engine
        kind = framework if framework in ("vllm", "sglang", "tgi", "llamacpp") else None
        if self.config.metrics_url:
            self._engine = factory(self.config.metrics_url, kind=kind, timeout_s=self.engine_timeout_s)
            return self._engine
        now = self._clock()
        if now - self._last_discovery < REDISCOVER_S:
            return None
        self._last_discovery = now
        url, reason = discover(ports, framework, self.engine_timeout_s, budget_s=max(1.0, 2 * self.config.interval_s))
        if url is None:
            self._engine_why = reason
            return None
        self._engine = factory(url, kind=kind, timeout_s=self.engine_timeout_s)
        return self._engine

    def _host_ceilings(self):
        if self._host is None:
            from infermon.probes.host import host_ceilings

            self._host = host_ceilings(self.config.host_overrides or None, self.config.allow_calibration)
        return self._host

    def tick(self) -> Snapshot:
        """Sample everything once."""
        started_wall, started = self._wall(), self._clock()
        why: dict[str, str] = {}
        # The scrape waits on the engine's answer, not on our CPU: it runs beside the local probes.
        pending = self._pool().submit(self._engine.sample) if self._engine is not None else None
        tree = self.process.sample()
        devices: tuple = ()
        if self.nvml.available:
            devices = self.nvml.sample(tree.pids)
        else:
            why["devices"] = self.nvml.why or "NVML unavailable"

        engine: EngineSample | None = None
        if pending is not None:
            engine = pending.result()
            if engine.source_time is None and "engine" not in engine.why:
                # When the answer was in hand: the clock its counters are differenced over.
                engine = replace(engine, source_time=self._clock())
        elif tree.alive:
            ports = tuple(sorted({p for proc in tree.processes for p in proc.listening_ports}))
            probe = self._engine_probe(ports, tree.framework)
            if probe is not None:
                engine = probe.sample()
                if engine.source_time is None and "engine" not in engine.why:
                    engine = replace(engine, source_time=self._clock())
            else:
                why["engine"] = self._engine_why or "no metrics endpoint found (give --metrics-url)"
        if not tree.alive:
            engine = None
            why["engine"] = "the process has exited"

        agents: tuple = ()
        if tree.alive:
            from infermon.probes.agent_channel import engine_from_agents, read_agents

            reading = read_agents(tree.pids)
            agents = reading.agents
            if reading.notices:
                why["agent_channel"] = "; ".join(reading.notices)
            if engine is None and agents:
                engine = engine_from_agents(agents)
                why.pop("engine", None)
            elif not agents and engine is None:
                why["agent"] = next(iter(reading.why.values()), "no agent in the process tree (infermon run / attach)")
            elif not agents and reading.why:
                why["agent"] = next(iter(reading.why.values()))  # a record skipped, beside the engine's figures

        host = None
        if not any(d.used_by_tree for d in devices):
            host = self._host_ceilings()
            from infermon.probes.host import host_device_sample

            devices = devices + (host_device_sample(host),)
        return Snapshot(time=started_wall, monotonic=started, interval_s=self.config.interval_s, tree=tree,
                        devices=devices, engine=engine, host=host, why=why, agents=agents)

    def _pool(self):
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infermon-scrape")
        return self._executor

    def close(self) -> None:
        self.nvml.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
