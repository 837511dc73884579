"""The watched process tree (psutil): who is who, what framework, which model, which ports.

Reads /proc only; never signals, ptraces or otherwise touches the target.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import psutil

from infermon.probes.snapshot import ProcessInfo, ProcessTree

_TITLE = re.compile(r"^[A-Za-z][\w.-]*::\S+$")

# How often listening ports are re-read: they rarely change and reading them
# walks every file descriptor of every process in the tree.
PORT_REFRESH_S = 5.0

# (framework, pattern over a process's launcher: its program, python module or script, or title).
_FRAMEWORK_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("vllm", re.compile(r"^(vllm(\s|$|\.)|VLLM::)", re.IGNORECASE)),
    ("sglang", re.compile(r"^(sglang(\s|$|\.|::))", re.IGNORECASE)),
    ("tgi", re.compile(r"^text-generation-(launcher|server|router)")),
    ("llamacpp", re.compile(r"^(llama-server|llama-cli|llama_cpp\.server)")),
    ("tensorrt-llm", re.compile(r"^(trtllm-serve|tensorrt_llm|tritonserver)", re.IGNORECASE)),
)



class TargetError(Exception):
    """The pid cannot be watched; the message is one line for the user."""


@dataclass(frozen=True)
class _Identity:
    pid: int
    create_time: float


def open_target(pid: int) -> psutil.Process:
    """The process to watch, or :class:`TargetError`: missing, another user's, or a zombie."""
    if pid <= 0:
        raise TargetError(f"pid must be a positive number, not {pid}")
    try:
        proc = psutil.Process(pid)
        uid = proc.uids().real
        status = proc.status()
        proc.cmdline()
    except psutil.NoSuchProcess:
        raise TargetError(f"no process with pid {pid}") from None
    except psutil.AccessDenied:
        raise TargetError(f"pid {pid} is not ours to read (another user's process: run as that user or root)") from None
    if status == psutil.STATUS_ZOMBIE:
        raise TargetError(f"pid {pid} has exited (zombie)")
    if os.geteuid() != 0 and uid != os.geteuid():
        try:
            owner = proc.username()
        except (psutil.Error, KeyError):
            owner = str(uid)
        raise TargetError(f"pid {pid} belongs to user {owner}; infermon watches your own processes (or run as root)")
    return proc


def launcher(cmdline: tuple[str, ...]) -> str:
    """What a command line runs: ``vllm serve``, ``sglang.launch_server`` (python -m), a script's
    name, or a process title such as ``VLLM::EngineCore``."""
    if not cmdline:
        return ""
    program = os.path.basename(cmdline[0].split()[0]) if cmdline[0].strip() else ""
    if _TITLE.match(program):
        return program
    if re.match(r"python[0-9.]*$", program):
        args = list(cmdline[1:])
        for index, token in enumerate(args):
            if token == "-m" and index + 1 < len(args):
                return args[index + 1]
            if token in ("-c",):
                return "python -c"
            if not token.startswith("-"):
                return os.path.basename(token)
        return "python"
    return " ".join([program, *cmdline[1:2]])


def detect_framework(cmdlines: list[tuple[str, ...]]) -> tuple[str, str | None]:
    """(framework, evidence) from the tree's launchers and process titles.

    Engines are recognised by their launchers and titles; failing that, a
    Python process is ``python`` (the agent or a torch check may refine it).
    """
    launchers = [launcher(c) for c in cmdlines]
    for text in launchers:
        for framework, pattern in _FRAMEWORK_PATTERNS:
            if pattern.search(text):
                return framework, text
    for cmdline in cmdlines:
        if cmdline and re.search(r"(^|/)python[0-9.]*$", cmdline[0]):
            return "python", " ".join(cmdline)[:120]
    return "unknown", None


def _option_value(argv: list[str], names: tuple[str, ...]) -> str | None:
    for index, token in enumerate(argv):
        for name in names:
            if token == name and index + 1 < len(argv):
                return argv[index + 1]
            if token.startswith(name + "="):
                return token.split("=", 1)[1]
    return None


def model_from_cmdline(cmdline: tuple[str, ...], framework: str) -> str | None:
    """The model a command line names: ``--model``, ``--model-path``, ``--model-id``,
    ``vllm serve MODEL``, ``trtllm-serve MODEL``, llama.cpp's ``-m X.gguf`` / ``--hf-repo``."""
    argv = list(cmdline)
    found = _option_value(argv, ("--model", "--model-path", "--model-id", "--model_name_or_path", "--model-name-or-path"))
    if found:
        return found
    for launcher in ("serve",):
        # `vllm serve MODEL` / `trtllm-serve MODEL`: the first positional after the verb.
        for index, token in enumerate(argv[:-1]):
            if token == launcher or token.endswith("trtllm-serve"):
                candidate = argv[index + 1]
                if not candidate.startswith("-"):
                    return candidate
    if argv and argv[0].endswith("trtllm-serve") and len(argv) > 1 and not argv[1].startswith("-"):
        return argv[1]
    # `-m` is python's "run module" flag: only take it from llama.cpp, or when it names a GGUF file.
    value = _option_value(argv, ("-m",))
    if value and (framework == "llamacpp" or value.lower().endswith(".gguf")):
        return value
    return _option_value(argv, ("-hf", "--hf-repo", "-hfr"))


def _resolve_relative(model: str, proc: psutil.Process) -> str:
    """A relative model path is relative to the target's working directory, not ours; a name that
    is no path there (an HF id, a preset) is kept as it is."""
    if os.path.isabs(model) or model.startswith("~"):
        return model
    try:
        candidate = os.path.normpath(os.path.join(proc.cwd(), model))
    except psutil.Error:
        return model
    return candidate if os.path.exists(candidate) else model


class ProcessProbe:
    """Samples the target and its descendants once per tick.

    Keeps psutil.Process objects across ticks so CPU% is measured between
    ticks (psutil needs the previous reading) and a reused pid is noticed
    by its different create time.
    """

    def __init__(self, pid: int, clock=None) -> None:
        import time

        self.pid = pid
        self._clock = clock or time.monotonic
        self._root = open_target(pid)
        self._root_identity = _Identity(pid, self._root.create_time())
        self._procs: dict[int, psutil.Process] = {}
        self._ports: dict[_Identity, tuple[int, ...]] = {}
        self._ports_read_at: dict[_Identity, float] = {}
        self._framework: tuple[str, str | None] | None = None
        self._model_argument: str | None = None

    def _exited_tree(self, reason: str) -> ProcessTree:
        return ProcessTree(root_pid=self.pid, processes=(), alive=False, why={"process": reason})

    def sample(self) -> ProcessTree:
        """One reading of the tree; a dead or replaced target gives ``alive=False`` and the reason."""
        try:
            if self._root.create_time() != self._root_identity.create_time:
                return self._exited_tree(f"pid {self.pid} exited and was reused by another process")
            if self._root.status() == psutil.STATUS_ZOMBIE:
                return self._exited_tree(f"pid {self.pid} has exited")
            children = self._root.children(recursive=True)
        except psutil.NoSuchProcess:
            return self._exited_tree(f"pid {self.pid} has exited")
        except psutil.AccessDenied:
            return self._exited_tree(f"pid {self.pid} can no longer be read (permission denied)")

        current: dict[int, psutil.Process] = {self.pid: self._root}
        for child in children:
            known = self._procs.get(child.pid)
            # Reuse the object we primed CPU% on, unless the pid now names another process.
            current[child.pid] = known if known is not None and _same(known, child) else child
        self._procs = current

        infos: list[ProcessInfo] = []
        now = self._clock()
        for pid, proc in current.items():
            info = self._read(proc, now)
            if info is not None:
                infos.append(info)
        live = {_identity(p) for p in current.values()}
        self._ports = {k: v for k, v in self._ports.items() if k in live}
        self._ports_read_at = {k: v for k, v in self._ports_read_at.items() if k in live}

        if self._framework is None or self._framework[0] in ("unknown", "python"):
            self._framework = detect_framework([i.cmdline for i in infos])
        framework, evidence = self._framework
        if self._model_argument is None:
            for info in infos:
                found = model_from_cmdline(info.cmdline, framework)
                if found:
                    self._model_argument = _resolve_relative(found, self._root)
                    break
        why = {}
        if self._model_argument is None:
            why["model_argument"] = "no --model/-m on the command line (give --model)"
        return ProcessTree(root_pid=self.pid, processes=tuple(infos), framework=framework,
                           framework_evidence=evidence, model_argument=self._model_argument, why=why)

    def _read(self, proc: psutil.Process, now: float) -> ProcessInfo | None:
        try:
            with proc.oneshot():
                cmdline = tuple(proc.cmdline())
                name = proc.name()
                ppid = proc.ppid()
                cpu = proc.cpu_percent(interval=None)
                rss = proc.memory_info().rss
                threads = proc.num_threads()
                created = proc.create_time()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return None
        except psutil.AccessDenied:
            return ProcessInfo(pid=proc.pid, ppid=None, name="?", cmdline=())
        role = None
        if cmdline and _TITLE.match(cmdline[0].strip()):
            role = cmdline[0].strip()
        elif len(cmdline) == 1 and " " in cmdline[0]:
            # setproctitle may leave one argv string with spaces in it.
            role = cmdline[0].split()[0] if _TITLE.match(cmdline[0].split()[0]) else None
        identity = _Identity(proc.pid, created)
        if now - self._ports_read_at.get(identity, -1e9) >= PORT_REFRESH_S:
            self._ports[identity] = _listening_ports(proc)
            self._ports_read_at[identity] = now
        return ProcessInfo(pid=proc.pid, ppid=ppid, name=name, cmdline=cmdline, role=role, cpu_percent=cpu,
                           rss_bytes=rss, threads=threads, create_time=created,
                           listening_ports=self._ports.get(identity, ()))


def _identity(proc: psutil.Process) -> _Identity:
    try:
        return _Identity(proc.pid, proc.create_time())
    except psutil.Error:
        return _Identity(proc.pid, -1.0)


def _same(a: psutil.Process, b: psutil.Process) -> bool:
    try:
        return a.create_time() == b.create_time()
    except psutil.Error:
        return False


def _listening_ports(proc: psutil.Process) -> tuple[int, ...]:
    try:
        connections = proc.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return ()
    ports = {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN and c.laddr}
    return tuple(sorted(ports))
