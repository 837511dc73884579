"""infermon's in-process agent: token and step counters and torch allocator figures, published
once per interval for the monitor to read.

It runs inside someone else's Python, so it imports only the standard library (and the target's
own torch, if that is already imported), never executes anything it receives, keeps its channel
owner-only, cleans up on exit, and no error inside it may reach the target.

Use in your own script::

    import infermon.probes.agent as agent
    agent.start()
    agent.watch(model)          # count prefill/decode calls of this torch module
    agent.count_tokens(n)       # or count generated tokens yourself

``infermon run`` and ``infermon attach`` load this same file (as ``infermon_agent``) into the
target, so the target needs no infermon installed.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import tempfile
import threading
import time

PROTOCOL = 1
DEFAULT_INTERVAL_S = 1.0
ENV_INTERVAL = "INFERMON_AGENT_INTERVAL"
# How long global forward hooks may look for a plain torch loop's model.
DISCOVERY_S = 30.0

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


class _Counters:
    """Plain integers bumped by the hooks (the GIL makes each += atomic enough for counters)."""

    def __init__(self) -> None:
        self.generation_tokens = 0
        self.prompt_tokens = 0
        self.decode_steps = 0
        self.prefill_calls = 0
        self.last_batch = 0
        self.max_batch = 0


def _batch_and_length(args, kwargs):
    """(B, S) of a forward call's token input: ``input_ids`` [B, S], or ``inputs_embeds`` [B, S, H]."""
    candidates = [kwargs.get("input_ids"), kwargs.get("inputs_embeds")] if kwargs else []
    candidates += list(args[:1])
    for value in candidates:
        shape = getattr(value, "shape", None)
        if shape is not None and len(shape) >= 2:
            return int(shape[0]), int(shape[1])
    return None


class _Agent:
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.pid = os.getpid()
        self.counters = _Counters()
        self.channel = ensure_channel()
        self.hooks: list = []
        self.watched: list = []
        self.weights_bytes = 0
        self.params = 0
        self.model_config = None
        self.generate_patched = False
        self.discovery = None
        self.discovery_until = 0.0
        self.errors = 0
        self.last_error = ""
        self.started = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="infermon-agent", daemon=True)

    # -- counting -------------------------------------------------------------------------

    def on_forward(self, module, args, kwargs, output) -> None:
        try:
            shape = _batch_and_length(args, kwargs)
            if shape is None:
                return
            batch, length = shape
            c = self.counters
            if length > 1:
                # A prefill of B×S prompt tokens; its logits give each sequence its first new token.
                c.prompt_tokens += batch * length
                c.prefill_calls += 1
            else:
                c.decode_steps += 1
            c.generation_tokens += batch
            c.last_batch = batch
            if batch > c.max_batch:
                c.max_batch = batch
        except Exception as exc:  # never into the target
            self._note(exc)

    def watch(self, model) -> bool:
        register = getattr(model, "register_forward_hook", None)
        if register is None:
            self._note(TypeError(f"watch() needs a torch.nn.Module, not {type(model).__name__}"))
            return False
        if any(m is model for m in self.watched):
            return True
        try:
            handle = register(self.on_forward, with_kwargs=True)
        except TypeError:  # torch < 2.0: no kwargs in hooks
            handle = register(lambda m, a, o: self.on_forward(m, a, {}, o))
        self.hooks.append(handle)
        self.watched.append(model)
        try:
            self.weights_bytes += sum(p.numel() * p.element_size() for p in model.parameters())
            self.params += sum(p.numel() for p in model.parameters())
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

    def discover(self) -> None:
        """Find a plain torch loop's model: the outermost module called with token ids [B, S].

        Global forward hooks see every module call, which costs too much to keep: they stay
        only until the model is found (then it alone is watched) or DISCOVERY_S has passed.
        """
        if self.discovery is not None or self.watched:
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

    def finish_discovery(self) -> None:
        if self.discovery is None or not self.discovery:
            return
        found = getattr(self, "found", None)
        if found is not None or time.monotonic() > self.discovery_until or self.watched:
            for handle in self.discovery:
                handle.remove()
            self.discovery = ()
            if found is not None and not self.watched:
                self.watch(found)
                # Its first calls went by before the hook: count from the next one on.

    def patch_generate(self) -> None:
        """Watch every Hugging Face model whose ``generate()`` is called."""
        if self.generate_patched:
            return
        transformers = sys.modules.get("transformers")
        if transformers is None:
            return
        try:
            from transformers.generation.utils import GenerationMixin
        except Exception:
            return
        original = GenerationMixin.generate
        agent = self

        def generate(model, *args, **kwargs):
            try:
                agent.watch(model)
            except Exception as exc:
                agent._note(exc)
            return original(model, *args, **kwargs)

        generate.__wrapped__ = original
        GenerationMixin.generate = generate
        self._restore_generate = (GenerationMixin, original)
        self.generate_patched = True

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

    def record(self) -> dict:
        c = self.counters
        batch, self_max = c.last_batch, c.max_batch
        c.max_batch = 0
        return {
            "protocol": PROTOCOL, "pid": self.pid, "ppid": os.getppid(), "time": time.time(),
            "interval_s": self.interval_s, "started": self.started,
            "generation_tokens_total": c.generation_tokens, "prompt_tokens_total": c.prompt_tokens,
            "decode_steps_total": c.decode_steps, "prefill_calls_total": c.prefill_calls,
            "batch": batch, "max_batch": self_max, "watched_modules": len(self.watched),
            "weights_bytes": self.weights_bytes or None, "params": self.params or None,
            "model_config": self.model_config, "hf_generate_hooked": self.generate_patched,
            "torch": self._torch(), "errors": self.errors, "last_error": self.last_error,
        }

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
                    self.stop(from_thread=True)
                    return
                self.publish()
            except Exception as exc:
                self._note(exc)
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread.start()
        atexit.register(self.stop)

    def stop(self, from_thread: bool = False) -> None:
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
        restore = getattr(self, "_restore_generate", None)
        if restore is not None:
            setattr(restore[0], "generate", restore[1])
        for path in (record_path(self.pid, self.channel), stop_path(self.pid, self.channel)):
            try:
                os.unlink(path)
            except OSError:
                pass
        if not from_thread and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2 * self.interval_s)

    def _note(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]


def start(interval_s: float | None = None) -> bool:
    """Start publishing (idempotent). Returns False, and stays silent, if the channel is unusable."""
    global _agent, not_started
    with _lock:
        if _agent is not None and _agent.pid == os.getpid() and not _agent._stop.is_set():
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
    """Stop publishing, remove the hooks and the channel file."""
    global _agent
    with _lock:
        if _agent is not None:
            _agent.stop()
            _agent = None


def watch(model) -> bool:
    """Count the forward calls of ``model`` (a torch.nn.Module): length > 1 is a prefill of B×S tokens,
    length 1 a decode step of batch B. Starts the agent if needed."""
    if _agent is None and not start():
        return False
    try:
        return _agent.watch(model)
    except Exception as exc:
        _agent._note(exc)
        return False


def count_tokens(n: int, prompt: bool = False, batch: int | None = None) -> None:
    """Add ``n`` generated tokens (or prompt tokens) where the hooks cannot see your loop."""
    if _agent is None and not start():
        return
    try:
        counters = _agent.counters
        if prompt:
            counters.prompt_tokens += int(n)
        else:
            counters.generation_tokens += int(n)
            counters.decode_steps += 1
            if batch:
                counters.last_batch = int(batch)
                counters.max_batch = max(counters.max_batch, int(batch))
    except Exception as exc:
        _agent._note(exc)


def running() -> bool:
    return _agent is not None and not _agent._stop.is_set()
