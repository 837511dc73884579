"""One tick of every probe → one :class:`Snapshot`.

The sampler owns the probes and runs them in turn; it is driven by whoever
needs snapshots (``--once``, ``--record``, the TUI's sampler thread). It never
raises for anything the environment does: each part degrades with a reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from infermon.probes.process import ProcessProbe
from infermon.probes.snapshot import AgentSample, EngineSample, ProcessTree, Snapshot, evolve

# While no metrics endpoint answers, look again this often (servers take a while to start).
REDISCOVER_S = 10.0
# How many discoveries in a row may be retried at the next tick when a likely engine port was slow.
SLOW_RETRIES = 3


def agent_counts_tokens(agent: AgentSample) -> bool:
    """Whether an agent's token counters mean anything: it watches a model, or has counted tokens."""
    return bool(agent.params or agent.weights_bytes or agent.generation_tokens_total or agent.decode_steps_total)


def agents_not_counting(agents: tuple[AgentSample, ...], in_engine: bool = True) -> str:
    """Why agents in the tree give no token rate (in the agent's own words where it says).
    ``in_engine``: the tree is an engine's (vLLM, SGLang, …), whose workers call their model in a
    way the agent cannot count; otherwise (a script) it has most likely not built its model yet."""
    pids = ", ".join(str(a.pid) for a in agents)
    said = next((a.why["tokens"] for a in agents if a.why.get("tokens")), None)
    if said is None:
        said = ("it watches no model (an engine worker calls its model with flattened token ids)" if in_engine
                else "no model called with token ids yet (a script counts from its model's first call)")
    return f"the agent in pid {pids} counts no tokens: {said}"


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
        self._slow_discoveries = 0
        self._host = None
        # Pids whose agent published last tick: when one exits, its final record is read once more.
        self._agent_pids: frozenset[int] = frozenset()
        # Final records read (and removed): they stand for their process until it leaves the tree.
        self._final_agents: dict[int, object] = {}
        from infermon.probes.agent_channel import AgentWatch

        self._agent_watch = AgentWatch()

    @property
    def engine_timeout_s(self) -> float:
        """Never wait on an endpoint longer than most of one interval (and never more than 2 s)."""
        return max(0.2, min(2.0, 0.8 * self.config.interval_s))

    def _engine_probe(self, tree: ProcessTree):
        from infermon.probes.engines import EngineProbe, discover, engine

        factory = self._engine_factory or EngineProbe
        if self._engine is not None:
            return self._engine
        kind = tree.framework if engine(tree.framework) is not None else None
        if self.config.metrics_url:
            self._engine = factory(self.config.metrics_url, kind=kind, timeout_s=self.engine_timeout_s)
            return self._engine
        now = self._clock()
        if now - self._last_discovery < REDISCOVER_S:
            return None
        self._last_discovery = now
        # The API server's port first: an engine's workers listen on many ephemeral ports (gloo, ZMQ)
        # that never answer HTTP. Watching a worker, the API server is an ancestor.
        ancestors = self.process.engine_ancestor_ports()
        # The worker's own ports are no API server's: only its ancestors' then.
        primary = ancestors or (tree.root.listening_ports if tree.root is not None else ())
        ports = tuple(dict.fromkeys(primary + tuple(sorted({p for proc in tree.processes
                                                            for p in proc.listening_ports}))))
        found = discover(ports, tree.framework, self.engine_timeout_s,
                         budget_s=max(1.0, 2 * self.config.interval_s), primary=primary)
        if found.url is None:
            self._engine_why = found.why
            # A likely engine port that did not answer in time is probably the engine, busy: ask
            # again next tick rather than in 10 s, a few times (a port that never answers, a ZMQ
            # socket say, must not cost every tick its whole discovery budget).
            self._slow_discoveries = self._slow_discoveries + 1 if found.slow else 0
            if 0 < self._slow_discoveries <= SLOW_RETRIES:
                self._last_discovery = -1e9
            return None
        self._slow_discoveries = 0
        self._engine = factory(found.url, kind=kind, timeout_s=self.engine_timeout_s)
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
        # The engine answers while /proc is read: its metrics are asked for first and read after,
        # on this thread (no second thread to wake and wait on each tick).
        scraping = self._engine is not None
        prime = getattr(self._engine, "prime", None)
        if prime is not None:
            prime()
        tree = self.process.sample()
        devices: tuple = ()
        if self.nvml.available:
            devices = self.nvml.sample(tree.pids)
        else:
            why["devices"] = self.nvml.why or "NVML unavailable"

        engine: EngineSample | None = None
        if scraping:
            engine = self._engine.sample()
            if engine.source_time is None and "engine" not in engine.why:
                # When the answer was in hand: the clock its counters are differenced over.
                engine = evolve(engine, source_time=self._clock())
        elif tree.alive:
            probe = self._engine_probe(tree)
            if probe is not None:
                engine = probe.sample()
                if engine.source_time is None and "engine" not in engine.why:
                    engine = evolve(engine, source_time=self._clock())
            else:
                why["engine"] = self._engine_why or "no metrics endpoint found (give --metrics-url)"
        if not tree.alive:
            engine = None
            why["engine"] = "the process has exited"

        agents: tuple = ()
        if tree.alive or self._agent_pids or self._final_agents:
            from infermon.probes.agent_channel import engine_from_agents

            live_pids = tree.pids if tree.alive else frozenset()
            reading = self._agent_watch.read(live_pids, exited=self._agent_pids, consume_final=True)
            agents = reading.agents
            if reading.notices:
                why["agent_channel"] = "; ".join(reading.notices)
            self._agent_pids = frozenset(a.pid for a in agents if not a.final)
            agents = self._with_final_agents(agents, live_pids, tree.alive)
            # Engine counters win. The agents' token counters are a rate only where no endpoint
            # answers and an agent counts tokens: one that watches no model (a vLLM worker, whose
            # model takes flattened token ids) would read as 0 tokens/s while the server generates.
            counting = tuple(a for a in agents if agent_counts_tokens(a))
            if engine is None and counting:
                # An exited process's agent left its last counts: they end the run's totals.
                engine = engine_from_agents(counting)
                why.pop("engine", None)
            elif engine is None and agents:
                from infermon.probes.engines import engine as engine_module

                why["agent"] = agents_not_counting(agents, in_engine=engine_module(tree.framework) is not None)
            elif not agents and engine is None and tree.alive:
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

    def _with_final_agents(self, agents: tuple, live_pids: frozenset[int], alive: bool) -> tuple:
        """An agent that left its final record has counted everything its process made: that
        record stands (its counters no longer move) while the process lingers, and once more in
        the tick that sees the tree gone."""
        for agent in agents:
            if agent.final:
                self._final_agents[agent.pid] = agent
        seen = {agent.pid for agent in agents}
        extra = []
        for pid, final in list(self._final_agents.items()):
            if pid not in seen and (pid in live_pids or not alive):
                extra.append(final)
            if not alive or pid not in live_pids:
                del self._final_agents[pid]
        return tuple(sorted(agents + tuple(extra), key=lambda a: a.pid))

    def close(self) -> None:
        self.nvml.close()
        close_engine = getattr(self._engine, "close", None)
        if close_engine is not None:
            close_engine()
