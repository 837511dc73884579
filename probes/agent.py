"""infermon's in-process agent: token and step counters, the KV cache, request latencies and
memory, published once per interval for the monitor to read.

It runs inside someone else's Python, so it imports only the standard library (and the target's
own torch and transformers, if those are already imported), never executes anything it receives,
keeps its channel owner-only, leaves one last record at exit and no error inside it may reach the
target.

Use in your own script::

    import infermon.probes.agent as agent
    agent.start()
    agent.watch(model)          # count prefill/decode calls of this torch module
    agent.count_tokens(n)       # or count generated tokens yourself
    agent.kv_tokens(n)          # tokens your KV cache holds now (all sequences together)
    r = agent.request(4)        # 4 sequences start now ...
    r.tokens()                  # ... and each got one more token now (time to first token, then
                                #     inter-token latency)

``infermon run`` and ``infermon attach`` load this same file (as ``infermon_agent``) into the
target, so the target needs no infermon installed; either copy reaches the one agent of the process.
"""

from __future__ import annotations

import atexit
import bisect
import json
import os
import sys
import tempfile
import threading
import time
import weakref
from collections import deque

PROTOCOL = 1
DEFAULT_INTERVAL_S = 1.0
ENV_INTERVAL = "INFERMON_AGENT_INTERVAL"
# How long global forward hooks may look for a plain torch loop's model.
DISCOVERY_S = 30.0
# Serving engines call their model with flattened token ids ([tokens], not [batch, seq]): the
# search never finds it there, and its global hooks send every module call of every step through
# torch's slow path for DISCOVERY_S (a vLLM worker generated 5-30% less meanwhile). Their own
# /metrics count their tokens; where one of these is loaded, the agent does not search.
SERVING_ENGINES = ("vllm", "sglang", "text_generation_server", "tensorrt_llm")

_lock = threading.Lock()
_agent = None  # the one _Agent of this process
# Why the last start() failed: (monotonic time, pid, reason), or None. Read it; nothing is printed.
not_started = None
START_RETRY_S = 10.0


def channel_dir() -> str:
    """``$XDG_RUNTIME_DIR/infermon`` when that is a private directory of ours, else ``<tmp>/infermon-<uid>``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        try:
            info = os.lstat(runtime)
            if info.st_uid == os.getuid() and (info.st_mode & 0o077) == 0 and not os.path.islink(runtime):
                return os.path.join(runtime, "infermon")
        except OSError:
            pass
    return os.path.join(tempfile.gettempdir(), f"infermon-{os.getuid()}")


def fallback_prefix(uid: int | None = None) -> str:
    """Name prefix of the private directories used when the shared channel is squatted or unsafe."""
    return f"infermon-{os.getuid() if uid is None else uid}-"


def channel_problem(path: str, uid: int | None = None) -> str | None:
    """Why ``path`` cannot be an agent channel of ``uid`` (default ours), or None when it can: it
    must be a plain directory (no symlink), owned by ``uid`` and closed to everyone else."""
    import stat

    uid = os.getuid() if uid is None else uid
    try:
        # Opened, not looked up: O_NOFOLLOW refuses a symlink, and what is checked is what was opened.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return f"{path} does not exist"
    except OSError as exc:
        if os.path.islink(path):
            return f"{path} is not a plain directory"
        return f"{path} is unreadable: {exc.strerror}"
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a plain directory"
    if info.st_uid != uid:
        return f"{path} belongs to another user (uid {info.st_uid})"
    if info.st_mode & 0o077:
        return f"{path} is open to other users (mode {oct(info.st_mode & 0o777)})"
    return None


def fallback_channels(parent: str | None = None, uid: int | None = None) -> list[str]:
    """The private fallback channels of ``uid`` in ``parent`` (default the temp dir) that are
    safe, most recently changed first. Anything else with the same prefix is ignored."""
    parent = parent or tempfile.gettempdir()
    prefix = fallback_prefix(uid)
    found = []
    try:
        with os.scandir(parent) as entries:
            for entry in entries:
                if entry.name.startswith(prefix) and channel_problem(entry.path, uid) is None:
                    try:
                        found.append((entry.stat(follow_symlinks=False).st_mtime, entry.path))
                    except OSError:
                        continue
    except OSError:
        return []
    return [path for _, path in sorted(found, reverse=True)]


def ensure_channel(path: str | None = None) -> str:
    """The directory to publish in: ``path`` (default :func:`channel_dir`) created 0700, or checked
    to be ours, 0700 and no symlink. A shared channel that cannot be made safe (another user made
    it first, it is open to others, or a symlink) is never used: the agent takes a private
    directory of its own instead, ``<tmp>/infermon-<uid>-XXXXXXXX`` (created 0700 under a random
    name, so it cannot be squatted), where the monitor looks too. Raises OSError only when not
    even that can be made."""
    candidates = [path] if path else [channel_dir()]
    shared = os.path.join(tempfile.gettempdir(), f"infermon-{os.getuid()}")
    if not path and shared not in candidates:
        candidates.append(shared)
    for candidate in candidates:
        try:
            os.mkdir(candidate, 0o700)
        except OSError:
            pass  # it exists (checked below), or cannot be made here
        if channel_problem(candidate) is None:
            return candidate
    existing = fallback_channels()
    if existing:
        return existing[0]
    return tempfile.mkdtemp(prefix=fallback_prefix())


def record_path(pid: int, channel: str | None = None) -> str:
    return os.path.join(channel or channel_dir(), f"agent-{pid}.json")


def stop_path(pid: int, channel: str | None = None) -> str:
    return os.path.join(channel or channel_dir(), f"agent-{pid}.stop")


# Latency histogram bounds (s): 1, 1.5, 2, 3, 5, 7 per decade from 0.1 ms to 1000 s. A quantile read
# from them is within one bucket (at most ×1.5) of the truth; sum and count are exact.
LATENCY_BOUNDS = tuple(round(m * 10.0 ** e, 12) for e in range(-4, 3) for m in (1, 1.5, 2, 3, 5, 7)) + (1000.0,)
# A final record nobody read is removed by the next agent to start, once it is this old (s).
FINAL_RECORD_KEEP_S = 60.0
MAX_MODELS_IN_RECORD = 16
# Cache classes whose length is a device tensor (static caches), by type: decided once per type.
_STATIC_CACHE_TYPES: dict = {}


class _Counters:
    """Plain integers bumped by the hooks (the GIL makes each += atomic enough for counters)."""

    def __init__(self) -> None:
        self.generation_tokens = 0
        self.prompt_tokens = 0
        self.decode_steps = 0
        self.prefill_calls = 0
        self.requests = 0
        self.last_batch = 0
        self.max_batch = 0


class _Histogram:
    """A cumulative latency histogram over LATENCY_BOUNDS (s), as engines publish theirs."""

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BOUNDS) + 1)  # the last one: above the largest bound
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float, weight: int = 1) -> None:
        if weight <= 0 or not seconds >= 0.0:
            return
        self.counts[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += weight
        self.sum += seconds * weight
        self.count += weight

    def plain(self) -> dict:
        cumulative, running = [], 0
        for count in self.counts[:-1]:
            running += count
            cumulative.append(running)
        return {"le": list(LATENCY_BOUNDS), "cumulative": cumulative, "sum": self.sum, "count": self.count}


class _Model:
    """One watched torch module: its size, what it counted, and the KV cache its last call returned."""

    def __init__(self, module) -> None:
        self.ref = weakref.ref(module)
        config = getattr(module, "config", None)
        self.name = str(getattr(config, "_name_or_path", "") or type(module).__name__)[:200]
        self.weights_bytes = 0
        self.params = 0
        self.generation_tokens = 0
        self.prompt_tokens = 0
        self.batch = 0
        # The cache its last forward call returned: a weak reference (resident while the caller
        # holds it), its length in tokens per sequence (None: read it when publishing) and batch.
        self.cache_ref = None
        self.cache_length = None
        self.cache_batch = 0

    def note_cache(self, output, batch: int) -> None:
        """Remember the KV cache a Hugging Face forward call returned: ``Cache.get_seq_length()``
        or a legacy tuple's shapes ([B, heads, S, head_dim] per layer). A static cache's length is
        a device tensor: it is read when publishing, off the target's thread."""
        get = getattr(output, "get", None)
        if get is None:
            return
        cache = get("cache")  # transformers 5; `past_key_values` before (and warns there when read as an attribute)
        if cache is None:
            cache = get("past_key_values")
        if cache is None:
            return
        length = target = None
        if hasattr(cache, "get_seq_length"):
            target = cache
            static = _STATIC_CACHE_TYPES.get(type(cache))
            if static is None:
                static = _STATIC_CACHE_TYPES[type(cache)] = bool(getattr(cache, "is_compileable", False))
            if not static:
                length = cache.get_seq_length()
                if not isinstance(length, int):
                    length = None
        elif isinstance(cache, (tuple, list)) and cache and isinstance(cache[0], (tuple, list)) and cache[0]:
            target = cache[0][0]
            shape = target.shape
            length, batch = int(shape[-2]), int(shape[0])
        if target is None:
            return
        self.cache_ref = weakref.ref(target)
        self.cache_length = length
        self.cache_batch = batch

    def resident(self) -> tuple[int | None, int | None]:
        """(tokens, bytes) the last returned cache holds now; (0, 0) once it has been freed;
        (None, None) if this model never returned one."""
        if self.cache_ref is None:
            return None, None
        cache = self.cache_ref()
        if cache is None:
            return 0, 0
        length = self.cache_length
        if length is None:
            length = int(cache.get_seq_length())
        return length * self.cache_batch, _cache_bytes(cache)


def _cache_bytes(cache) -> int | None:
    """Bytes of the key and value tensors a cache holds (tensor metadata only; None if unknown)."""
    layers = getattr(cache, "layers", None)
    pairs = []
    if layers is not None:
        pairs = [(getattr(layer, "keys", None), getattr(layer, "values", None)) for layer in layers]
    elif hasattr(cache, "shape"):  # the first tensor of a legacy tuple cache: not the whole cache
        return None
    total = 0
    for pair in pairs:
        for tensor in pair:
            if tensor is not None and hasattr(tensor, "element_size"):
                total += tensor.numel() * tensor.element_size()
    return total or None


class _Call:
    """One ``generate()`` call as its thread saw it. The hooks only append; the publishing thread
    turns what they appended into counts and latencies (so the target never waits on a device)."""

    def __init__(self, model, entry: float, mask, input_length: int | None) -> None:
        self.model = model
        self.entry = entry
        self.mask = mask                  # attention_mask, for the prompt's tokens without padding
        self.input_length = input_length  # sequence length of the input ids
        self.prefill_tokens = 0
        self.prefill_length = 0
        self.prefill_batch = 0
        self.forward_tokens = 0           # B per forward call: the count when no stop records came
        self.stops: list = []             # (time, length after the step, per-sequence "done" tensor)
        self.marks: list = []             # when the loop resumed after a step: its tokens were on the host
        self.closed = False
        # Settled by the publishing thread:
        self.settled = False
        self.prompt_counted = False
        self.unusable = False
        self.finished: list[bool] | None = None
        self.counted = 0
        self.steps: list = []             # (sequences that got a token, tokens each, stop time)
        self.timed = 0
        self.previous_time = None
        self.previous_length = input_length


class Request:
    """A request (or a batch of sequences started together) of a loop the hooks cannot time.

    ``tokens()`` says that each running sequence produced one more token now: the first call gives
    the time to first token, later calls the inter-token latency. Tokens reported here are counted
    as generated tokens (and then the hooks stop counting tokens in this process, so nothing counts
    twice)."""

    def __init__(self, agent, sequences: int, prompt_tokens: int | None) -> None:
        self._agent = agent
        self.sequences = max(0, int(sequences))
        self.running = self.sequences
        self.started = time.perf_counter()
        self.last = None
        if agent is not None:
            agent.report_request(self.sequences, prompt_tokens)

    def tokens(self, sequences: int | None = None) -> None:
        """``sequences`` (default: all still running) each produced one token now."""
        agent = self._agent
        if agent is None:
            return
        try:
            count = self.running if sequences is None else max(0, int(sequences))
            now = time.perf_counter()
            if self.last is None:
                agent.latency.append(("ttft", now - self.started, count))
            else:
                agent.latency.append(("itl", now - self.last, count))
            self.last = now
            agent.report_tokens(count)
        except Exception as exc:
            agent._note(exc)

    def finish(self, sequences: int | None = None) -> None:
        """``sequences`` (default: all) are done: later ``tokens()`` calls count the others only."""
        self.running = 0 if sequences is None else max(0, self.running - int(sequences))


def _batch_and_length(args, kwargs):
    """(B, S) of a forward call's token input: ``input_ids`` [B, S], or ``inputs_embeds`` [B, S, H]."""
    candidates = [kwargs.get("input_ids"), kwargs.get("inputs_embeds")] if kwargs else []
    candidates += list(args[:1])
    for value in candidates:
        shape = getattr(value, "shape", None)
        if shape is not None and len(shape) >= 2:
            return int(shape[0]), int(shape[1])
    return None


def _rss_bytes() -> tuple[int | None, str | None]:
    """This process's resident set (bytes): /proc/self/statm's second field × the page size."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"), None
    except (OSError, ValueError, IndexError) as exc:
        return None, f"process RSS unreadable here ({type(exc).__name__})"


class _Agent:
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.pid = os.getpid()
        self.counters = _Counters()
        self.channel = ensure_channel()
        self.hooks: list = []
        self.models: dict[int, _Model] = {}
        self.model_config = None
        self.generate_patched = False
        self.patches: list = []
        self.discovery = None
        self.discovery_until = 0.0
        self.discovery_skipped: str | None = None  # why no plain torch loop is searched for
        self.errors = 0
        self.last_error = ""
        self.started = time.time()
        self.seq = 0
        self.reported = False      # tokens come from count_tokens/request: the hooks count none
        self.reported_kv = None    # kv_tokens(n)
        self.local = threading.local()
        self.calls: list[_Call] = []
        self.latency: deque = deque()
        self.ttft = _Histogram()
        self.inter_token = _Histogram()
        self.final = False
        self._publish_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="infermon-agent", daemon=True)

    # -- counting -------------------------------------------------------------------------

    def on_forward(self, module, args, kwargs, output) -> None:
        try:
            shape = _batch_and_length(args, kwargs)
            if shape is None:
                return
            batch, length = shape
            model = self.models.get(id(module))
            if model is not None:
                model.batch = batch
                model.note_cache(output, batch)
            c = self.counters
            call = getattr(self.local, "call", None)
            if call is not None and call.model is not module:
                return  # another model inside a generate() call (an assistant's drafts): not output
            prefill = length > 1 and (call is None or not call.stops)
            if prefill:
                c.prefill_calls += 1
            else:
                c.decode_steps += 1
            c.last_batch = batch
            if batch > c.max_batch:
                c.max_batch = batch
            if call is not None:
                # generate() counts from its own stop records: padding and early stops are known there.
                call.forward_tokens += batch
                if prefill:
                    call.prefill_tokens += batch * length
                    call.prefill_length += length
                    call.prefill_batch = batch
                return
            if self.reported:
                return
            # A prefill of B×S prompt tokens; its logits give each sequence its first new token.
            if length > 1:
                c.prompt_tokens += batch * length
                if model is not None:
                    model.prompt_tokens += batch * length
            c.generation_tokens += batch
            if model is not None:
                model.generation_tokens += batch
        except Exception as exc:  # never into the target
            self._note(exc)

    def watch(self, model) -> bool:
        register = getattr(model, "register_forward_hook", None)
        if register is None:
            self._note(TypeError(f"watch() needs a torch.nn.Module, not {type(model).__name__}"))
            return False
        known = self.models.get(id(model))
        if known is not None and known.ref() is model:
            return True
        entry = _Model(model)
        self.models[id(model)] = entry
        try:
            handle = register(self.on_forward, with_kwargs=True)
        except TypeError:  # torch < 2.0: no kwargs in hooks
            handle = register(lambda m, a, o: self.on_forward(m, a, {}, o))
        self.hooks.append(handle)
        self._end_discovery()  # a model is watched: the costly global hooks go now, not a tick later
        try:
            for p in model.parameters():
                entry.weights_bytes += p.numel() * p.element_size()
                entry.params += p.numel()
        except Exception as exc:
            self._note(exc)
        if self.model_config is None:
            # A Hugging Face model carries its config.json: the monitor's arithmetic needs nothing more.
            try:
                to_dict = getattr(getattr(model, "config", None), "to_dict", None)
                if to_dict is not None:
                    config = json.loads(json.dumps(to_dict(), default=str))
                    if len(json.dumps(config)) <= 32 * 1024:
                        self.model_config = config
            except Exception as exc:
                self._note(exc)
        return True

    def report_tokens(self, n: int, prompt: bool = False) -> None:
        self.reported = True
        if prompt:
            self.counters.prompt_tokens += n
        else:
            self.counters.generation_tokens += n

    def report_request(self, sequences: int, prompt_tokens: int | None) -> None:
        self.counters.requests += sequences
        if prompt_tokens:
            self.report_tokens(int(prompt_tokens), prompt=True)

    def discover(self) -> None:
        """Find a plain torch loop's model: the outermost module called with token ids [B, S].

        Global forward hooks see every module call, which costs too much to keep: they stay
        only until the model is found (then it alone is watched) or DISCOVERY_S has passed.
        """
        if self.discovery is not None or self.models:
            return
        engine = next((name for name in SERVING_ENGINES if name in sys.modules), None)
        if engine is not None:
            self.discovery = ()
            self.discovery_skipped = f"{engine} is loaded: it calls its model with flattened token ids (its /metrics count the tokens)"
            return
        torch = sys.modules.get("torch")
        hooks = getattr(getattr(getattr(torch, "nn", None), "modules", None), "module", None)
        if hooks is None or not hasattr(hooks, "register_module_forward_pre_hook"):
            return
        depth = [0]
        agent = self

        def pre(module, args):
            try:
                if depth[0] == 0 and args and getattr(args[0], "dim", None) and args[0].dim() == 2 \
                        and not args[0].is_floating_point():
                    agent.found = module
            except Exception:
                pass
            depth[0] += 1

        def post(module, args, output):
            depth[0] = max(0, depth[0] - 1)

        self.discovery = (hooks.register_module_forward_pre_hook(pre), hooks.register_module_forward_hook(post))
        self.discovery_until = time.monotonic() + DISCOVERY_S

    def _end_discovery(self) -> None:
        for handle in self.discovery or ():
            try:
                handle.remove()
            except Exception as exc:
                self._note(exc)
        if self.discovery:
            self.discovery = ()

    def finish_discovery(self) -> None:
        if self.discovery is None or not self.discovery:
            return
        found = getattr(self, "found", None)
        if found is not None or time.monotonic() > self.discovery_until or self.models:
            for handle in self.discovery:
                handle.remove()
            self.discovery = ()
            if found is not None and not self.models:
                self.watch(found)
                # Its first calls went by before the hook: count from the next one on.
            self.found = None

    # -- Hugging Face generate() ----------------------------------------------------------

    def patch_generate(self) -> None:
        """Watch every Hugging Face model whose ``generate()`` is called, and see inside the call:
        which sequences are still running at each step (the stopping criteria's answer) and when
        each step's tokens reached the host (the loop's check that follows it).

        Only a transformers the target imported itself is touched, and only once its generation
        module has finished loading."""
        if self.generate_patched:
            return
        utils = sys.modules.get("transformers.generation.utils")
        stopping = sys.modules.get("transformers.generation.stopping_criteria")
        mixin = getattr(utils, "GenerationMixin", None)
        criteria = getattr(stopping, "StoppingCriteriaList", None)
        if mixin is None or criteria is None or not hasattr(mixin, "generate"):
            return
        agent = self
        local = self.local
        clock = time.perf_counter
        original_generate = mixin.generate

        def generate(model, *args, **kwargs):
            call = agent.begin_call(model, args, kwargs)
            try:
                return original_generate(model, *args, **kwargs)
            finally:
                if call is not None:
                    call.closed = True
                    local.call = None

        generate.__wrapped__ = original_generate
        self.patches.append((mixin, "generate", original_generate, generate))
        mixin.generate = generate

        original_check = getattr(mixin, "_has_unfinished_sequences", None)
        if original_check is not None:
            def has_unfinished_sequences(model, *args, **kwargs):
                result = original_check(model, *args, **kwargs)
                call = getattr(local, "call", None)
                if call is not None and call.model is model:
                    call.marks.append(clock())
                return result

            self.patches.append((mixin, "_has_unfinished_sequences", original_check, has_unfinished_sequences))
            mixin._has_unfinished_sequences = has_unfinished_sequences

        original_stop = getattr(criteria, "__call__", None)
        if original_stop is not None:
            def stopping_call(criteria_list, input_ids, scores, *args, **kwargs):
                done = original_stop(criteria_list, input_ids, scores, *args, **kwargs)
                call = getattr(local, "call", None)
                if call is not None:
                    try:
                        call.stops.append((clock(), int(input_ids.shape[-1]), done))
                    except Exception as exc:
                        agent._note(exc)
                return done

            self.patches.append((criteria, "__call__", original_stop, stopping_call))
            criteria.__call__ = stopping_call
        self.generate_patched = True

    def begin_call(self, model, args, kwargs) -> _Call | None:
        """A ``generate()`` call starts on this thread (None: not counted apart, e.g. nested)."""
        try:
            if self._stop.is_set() or getattr(self.local, "call", None) is not None:
                return None
            self.watch(model)
            ids = kwargs.get("input_ids")
            if ids is None:
                ids = kwargs.get("inputs")
            if ids is None and args:
                ids = args[0]
            shape = getattr(ids, "shape", None)
            length = int(shape[-1]) if shape is not None and len(shape) == 2 else None
            call = _Call(model, time.perf_counter(), kwargs.get("attention_mask"), length)
            self.counters.requests += int(shape[0]) if shape is not None and len(shape) == 2 else 1
            self.calls.append(call)
            self.local.call = call
            return call
        except Exception as exc:
            self._note(exc)
            return None

    def settle(self) -> None:
        """Turn what the generate() calls appended into counts and latencies (publishing thread)."""
        keep = []
        for call in list(self.calls):
            try:
                self._settle_call(call)
            except Exception as exc:
                self._note(exc)
                call.settled = True
            if not call.settled:
                keep.append(call)
        self.calls = keep
        while self.latency:
            which, seconds, weight = self.latency.popleft()
            (self.ttft if which == "ttft" else self.inter_token).observe(seconds, weight)

    def _add_generated(self, model: _Model | None, tokens: int) -> None:
        if not self.reported:
            self.counters.generation_tokens += tokens
            if model is not None:
                model.generation_tokens += tokens

    def _settle_call(self, call: _Call) -> None:
        closed = call.closed  # read first: every stop record of a closed call is appended already
        model = self.models.get(id(call.model))
        if not call.prompt_counted and (call.stops or closed):
            # The prefill is over: its prompt tokens, without the padding the attention mask marks.
            prompt = call.prefill_tokens
            mask = call.mask
            shape = tuple(getattr(mask, "shape", ()))
            if len(shape) == 2 and shape == (call.prefill_batch, call.prefill_length):
                prompt = int(mask.sum())
            call.mask = None
            call.prompt_counted = True
            if not self.reported:
                self.counters.prompt_tokens += prompt
                if model is not None:
                    model.prompt_tokens += prompt
        if call.stops and call.finished is None and not call.unusable:
            rows = tuple(getattr(call.stops[0][2], "shape", ()))
            if len(rows) != 1 or (call.prefill_batch and rows[0] != call.prefill_batch):
                call.unusable = True  # beam search and the like: one answer per beam candidate
            else:
                call.finished = [False] * rows[0]
        if call.unusable or not call.stops:
            # No per-sequence answers (another decoding loop): once the call is over, count every
            # sequence of every forward call, as for a plain loop.
            if closed:
                self._add_generated(model, call.forward_tokens)
                call.settled = True
            return
        while call.counted < len(call.stops):
            when, length, done = call.stops[call.counted]
            call.stops[call.counted] = None
            # A sequence's tokens end with the one that stopped it (EOS, a stop string): what
            # generate() appends to it after that is padding, not generated tokens.
            running = call.finished.count(False)
            width = max(1, length - call.previous_length) if call.previous_length is not None else 1
            call.previous_length = length
            self._add_generated(model, running * width)
            call.steps.append((running, width, when))
            for row, stopped in enumerate(done.tolist()):
                if stopped:
                    call.finished[row] = True
            call.counted += 1
        self._time_call(call, closed)
        if closed and call.timed == len(call.steps):
            call.settled = True

    def _time_call(self, call: _Call, closed: bool) -> None:
        """Step k's tokens reached the host when the loop next checked for unfinished sequences
        (that check waits for the device); without such marks, when the stopping criteria ran."""
        while call.timed < len(call.steps):
            k = call.timed
            running, width, stop_time = call.steps[k]
            if len(call.marks) > k + 1:
                when = call.marks[k + 1]
            elif closed or not call.marks:
                when = stop_time
            else:
                return
            if k == 0:
                self.ttft.observe(when - call.entry, running)
            elif call.previous_time is not None and running:
                self.inter_token.observe((when - call.previous_time) / width, running * width)
            call.previous_time = when
            call.timed += 1

    # -- publishing -------------------------------------------------------------------------

    def _torch(self) -> dict:
        torch = sys.modules.get("torch")
        if torch is None:
            return {"why": "torch is not imported in this process"}
        cuda = getattr(torch, "cuda", None)
        try:
            if cuda is None or not cuda.is_initialized():
                return {"why": "CUDA not initialised in this process (CPU run, or not yet)"}
            devices = []
            for index in range(cuda.device_count()):
                stats = cuda.memory_stats(index)
                if not stats:
                    continue
                devices.append({
                    "index": index,
                    "allocated_bytes": stats.get("allocated_bytes.all.current"),
                    "reserved_bytes": stats.get("reserved_bytes.all.current"),
                    "active_bytes": stats.get("active_bytes.all.current"),
                    "peak_allocated_bytes": stats.get("allocated_bytes.all.peak"),
                    "peak_reserved_bytes": stats.get("reserved_bytes.all.peak"),
                    "alloc_retries": stats.get("num_alloc_retries"),
                    "ooms": stats.get("num_ooms"),
                })
            current = cuda.current_device()
            # mem_get_info on the current device: its context exists already, so none is created.
            free, total = cuda.mem_get_info(current)
            return {"devices": devices, "current_device": current, "device_free_bytes": free,
                    "device_total_bytes": total}
        except Exception as exc:
            self._note(exc)
            return {"why": f"torch.cuda stats failed: {type(exc).__name__}"}

    def _kv(self) -> tuple[dict, list]:
        """Resident KV tokens (and bytes) now, per watched model and in all, with their source."""
        models, total_tokens, total_bytes, seen, bytes_known = [], 0, 0, False, True
        for entry in list(self.models.values())[:MAX_MODELS_IN_RECORD]:
            tokens, size = None, None
            try:
                tokens, size = entry.resident()
            except Exception as exc:
                self._note(exc)
            if tokens is not None:
                seen = True
                total_tokens += tokens
                if size is None:
                    bytes_known = False
                else:
                    total_bytes += size
            models.append({
                "name": entry.name, "alive": entry.ref() is not None, "weights_bytes": entry.weights_bytes or None,
                "params": entry.params or None, "batch": entry.batch, "kv_tokens_resident": tokens,
                "kv_bytes_resident": size, "generation_tokens_total": entry.generation_tokens,
                "prompt_tokens_total": entry.prompt_tokens})
        if self.reported_kv is not None:
            kv = {"kv_tokens_resident": self.reported_kv, "kv_bytes_resident": None, "kv_source": "reported"}
        elif seen:
            kv = {"kv_tokens_resident": total_tokens, "kv_bytes_resident": total_bytes if bytes_known else None,
                  "kv_source": "cache"}
        else:
            kv = {"kv_tokens_resident": None, "kv_bytes_resident": None, "kv_source": None,
                  "kv_why": "no watched model returned a KV cache (report it with agent.kv_tokens(n))"}
        return kv, models

    def record(self) -> dict:
        self.settle()
        c = self.counters
        batch, self_max = c.last_batch, c.max_batch
        c.max_batch = 0
        counts = {"generation_tokens_total": c.generation_tokens, "prompt_tokens_total": c.prompt_tokens,
                  "decode_steps_total": c.decode_steps, "prefill_calls_total": c.prefill_calls,
                  "requests_total": c.requests}
        # The counters' own time: the monitor's rates divide by the difference of these.
        wall, monotonic = time.time(), time.monotonic()
        kv, models = self._kv()
        rss, rss_why = _rss_bytes()
        alive = [m for m in self.models.values() if m.ref() is not None]
        self.seq += 1
        record = {
            "protocol": PROTOCOL, "pid": self.pid, "ppid": os.getppid(), "time": wall, "monotonic": monotonic,
            "seq": self.seq, "final": self.final, "interval_s": self.interval_s, "started": self.started,
            **counts, "batch": batch, "max_batch": self_max, "watched_modules": len(alive),
            "weights_bytes": sum(m.weights_bytes for m in alive) or None,
            "params": sum(m.params for m in alive) or None,
            "model_config": self.model_config, "hf_generate_hooked": self.generate_patched,
            "counting": "reported" if self.reported else "hooks", **kv, "models": models,
            "discovery_skipped": self.discovery_skipped,
            "ttft": self.ttft.plain(), "inter_token": self.inter_token.plain(),
            "rss_bytes": rss, "torch": self._torch(), "errors": self.errors, "last_error": self.last_error,
        }
        if rss_why:
            record["rss_why"] = rss_why
        return record

    def publish(self) -> None:
        path = record_path(self.pid, self.channel)
        temporary = f"{path}.{threading.get_ident()}.tmp"
        data = json.dumps(self.record()).encode()
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(temporary, flags, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(temporary, path)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.patch_generate()
                if "torch" in sys.modules:
                    self.discover()
                    self.finish_discovery()
                if os.path.exists(stop_path(self.pid, self.channel)):
                    self.stop(from_thread=True, final=False)
                    return
                with self._publish_lock:
                    if not self._stop.is_set():
                        self.publish()
            except Exception as exc:
                self._note(exc)
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        _sweep_final_records(self.channel)
        try:
            self.patch_generate()  # now, if transformers is loaded: the next generate() call is seen
        except Exception as exc:
            self._note(exc)
        self._thread.start()
        atexit.register(self.stop)
        self._catch_sigterm()
        if not self.generate_patched:
            sys.meta_path.insert(0, _ImportWatch(self))

    def _catch_sigterm(self) -> None:
        """Where SIGTERM would kill the process without a word (its default action, and we are on
        the main thread), leave the final record first, then die of the same signal."""
        import signal

        try:
            if threading.current_thread() is not threading.main_thread():
                return
            if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
                return
        except (ValueError, AttributeError):
            return
        agent = self

        def on_sigterm(signum, frame):
            try:
                agent.stop(final=True)
            finally:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

        try:
            signal.signal(signal.SIGTERM, on_sigterm)
            self.sigterm_handler = on_sigterm
        except (ValueError, OSError):
            pass

    def stop(self, from_thread: bool = False, final: bool = True) -> None:
        """Stop counting and publishing. ``final``: leave one last record, marked final, with
        everything counted up to now, for the monitor to read (and remove); else remove it."""
        if self.final or os.getpid() != self.pid:  # a forked child's copy: never the parent's record
            return
        self._stop.set()
        for handle in self.discovery or ():
            try:
                handle.remove()
            except Exception:
                pass
        self.discovery = ()
        for handle in self.hooks:
            try:
                handle.remove()
            except Exception:
                pass
        self.hooks.clear()
        for owner, name, original, ours in reversed(self.patches):
            try:
                if getattr(owner, name, None) is ours:  # never undo what someone patched after us
                    setattr(owner, name, original)
            except Exception:
                pass
        self.patches.clear()
        for finder in [f for f in sys.meta_path if isinstance(f, _ImportWatch) and f.agent is self]:
            try:
                sys.meta_path.remove(finder)
            except ValueError:
                pass
        written = False
        locked = self._publish_lock.acquire(timeout=max(1.0, 2 * self.interval_s))
        try:
            self.final = True
            if final:
                self.publish()
                written = True
        except Exception as exc:
            self._note(exc)
        finally:
            if locked:
                self._publish_lock.release()
        paths = [stop_path(self.pid, self.channel)]
        if not written:
            paths.append(record_path(self.pid, self.channel))
        for path in paths:
            try:
                os.unlink(path)
            except OSError:
                pass
        handler = getattr(self, "sigterm_handler", None)
        if handler is not None and threading.current_thread() is threading.main_thread():
            import signal

            try:
                if signal.getsignal(signal.SIGTERM) is handler:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
            except (ValueError, OSError):
                pass
        if not from_thread and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2 * self.interval_s)

    def _note(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]


class _ImportWatch:
    """A finder that finds nothing: it lets the agent wrap ``generate()`` as soon as the target's
    transformers has loaded its generation module, before the script can call it (the publishing
    thread looks only once per interval). It removes itself then."""

    def __init__(self, agent: _Agent) -> None:
        self.agent = agent

    def find_spec(self, name, path=None, target=None):
        try:
            agent = self.agent
            if not agent.generate_patched and "transformers.generation.utils" in sys.modules:
                agent.patch_generate()
            if agent.generate_patched or agent._stop.is_set():
                sys.meta_path.remove(self)
        except Exception:
            pass
        return None


def _sweep_final_records(channel: str) -> None:
    """Remove records left by processes that have exited, once no monitor has read them for a while."""
    try:
        names = os.listdir(channel)
    except OSError:
        return
    now = time.time()
    for name in names:
        if not (name.startswith("agent-") and name.endswith(".json")):
            continue
        try:
            pid = int(name[len("agent-"):-len(".json")])
            path = os.path.join(channel, name)
            if now - os.lstat(path).st_mtime < FINAL_RECORD_KEEP_S:
                continue
            try:
                os.kill(pid, 0)
                continue  # still running (or someone else's pid): not ours to judge
            except ProcessLookupError:
                os.unlink(path)
            except PermissionError:
                continue
        except (ValueError, OSError):
            continue


def _current():
    """The agent of this process, whichever copy of this file started it (``infermon run`` loads
    the agent as ``infermon_agent``; a script may import ``infermon.probes.agent`` too)."""
    for name in (__name__, "infermon_agent", "infermon.probes.agent"):
        found = getattr(sys.modules.get(name), "_agent", None)
        if found is not None and found.pid == os.getpid() and not found._stop.is_set():
            return found
    return None


def _after_fork_in_child() -> None:
    """A forked child inherits the hooks but not the publishing thread: it has no agent."""
    global _agent
    if _agent is not None:
        _agent._stop.set()
        _agent = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def start(interval_s: float | None = None) -> bool:
    """Start publishing (idempotent). Returns False, and stays silent, if the channel is unusable."""
    global _agent, not_started
    with _lock:
        if _current() is not None:
            return True
        if _start_failed_recently():
            return False
        try:
            interval = interval_s or float(os.environ.get(ENV_INTERVAL) or DEFAULT_INTERVAL_S)
            interval = min(max(interval, 0.05), 60.0)
            _agent = _Agent(interval)
            _agent.start()
            not_started = None
            return True
        except Exception as exc:
            # Never a word on the target's stdout or stderr: the reason stays here, and the
            # monitor says that no agent publishes.
            not_started = (time.monotonic(), os.getpid(), f"{type(exc).__name__}: {exc}"[:200])
            _agent = None
            return False


def _start_failed_recently() -> bool:
    """After a failed start, ``count_tokens`` and ``watch`` try again only every START_RETRY_S."""
    return (not_started is not None and not_started[1] == os.getpid()
            and time.monotonic() - not_started[0] < START_RETRY_S)


def stop() -> None:
    """Stop publishing and remove the hooks; the last record stays, marked final, for the monitor."""
    global _agent
    with _lock:
        agent = _current()
        if agent is not None:
            agent.stop()
        _agent = None


def _stopped_here() -> bool:
    """This process's agent was stopped (``infermon detach``, or ``stop()``): the plain-loop calls
    must not start it again behind the user's back."""
    for name in (__name__, "infermon_agent", "infermon.probes.agent"):
        found = getattr(sys.modules.get(name), "_agent", None)
        if found is not None and found.pid == os.getpid() and found._stop.is_set():
            return True
    return False


def _started():
    agent = _current()
    if agent is None and not _stopped_here() and start():
        agent = _current()
    return agent


def watch(model) -> bool:
    """Count the forward calls of ``model`` (a torch.nn.Module): length > 1 is a prefill of B×S tokens,
    length 1 a decode step of batch B. Starts the agent if needed."""
    agent = _started()
    if agent is None:
        return False
    try:
        return agent.watch(model)
    except Exception as exc:
        agent._note(exc)
        return False


def count_tokens(n: int, prompt: bool = False, batch: int | None = None) -> None:
    """Add ``n`` generated tokens (or prompt tokens) where the hooks cannot see your loop. From the
    first call on, tokens are what you report: the hooks count steps and batch, not tokens."""
    agent = _started()
    if agent is None:
        return
    try:
        counters = agent.counters
        agent.report_tokens(int(n), prompt=prompt)
        if not prompt:
            counters.decode_steps += 1
            if batch:
                counters.last_batch = int(batch)
                counters.max_batch = max(counters.max_batch, int(batch))
    except Exception as exc:
        agent._note(exc)


def kv_tokens(n: int) -> None:
    """Your loop's KV cache holds ``n`` tokens now (all sequences together); 0 once it is freed."""
    agent = _started()
    if agent is None:
        return
    try:
        agent.reported_kv = max(0, int(n))
    except Exception as exc:
        agent._note(exc)


def request(sequences: int = 1, prompt_tokens: int | None = None) -> Request:
    """``sequences`` sequences (a request, or a batch started together) begin now, with
    ``prompt_tokens`` prompt tokens in all; call ``.tokens()`` on the result as they produce tokens."""
    agent = _started()
    try:
        return Request(agent, sequences, prompt_tokens)
    except Exception as exc:
        if agent is not None:
            agent._note(exc)
        return Request(None, 0, None)


def running() -> bool:
    return _current() is not None
