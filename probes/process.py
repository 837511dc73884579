"""The watched process tree (psutil): who is who, what framework, which model, which ports.

Reads /proc only; never signals, ptraces or otherwise touches the target.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from dataclasses import dataclass

import psutil

from infermon.probes.engines.registry import engine, engine_for_launcher, option_value, parallelism, role_for_launcher
from infermon.probes.listeners import Listeners
from infermon.probes.snapshot import ProcessInfo, ProcessTree

_TITLE = re.compile(r"^[A-Za-z][\w.-]*::\S+$")

# How often listening ports are re-read: they rarely change and reading them
# walks every file descriptor of every process in the tree.
PORT_REFRESH_S = 5.0

# Processes of no engine that engines start anyway (multiprocessing's helper), by command line.
_GENERIC_ROLES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"multiprocessing\.resource_tracker"), "resource tracker"),
    (re.compile(r"multiprocessing\.forkserver"), "fork server"),
)


class TargetError(Exception):
    """The pid cannot be watched; the message is one line for the user."""


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


# Processes whose job is to start and reap others: their tree is a whole machine or container.
INIT_NAMES = frozenset({
    "init", "systemd", "upstart", "launchd", "tini", "tini-static", "dumb-init", "docker-init", "catatonit",
    "s6-svscan", "s6-supervise", "runsvdir", "runsv", "runit", "supervisord", "containerd-shim",
    "containerd-shim-runc-v2", "conmon", "sshd", "cron", "crond", "tmux: server", "screen", "SCREEN",
})
# A tree holding at least this many processes and this share of the machine's is no single server's.
MACHINE_TREE_MIN = 20
MACHINE_TREE_SHARE = 0.5


def init_like(pid: int) -> str | None:
    """Why ``pid`` is the root of a machine rather than a server to watch (one line naming the
    servers in its tree), or None when it is fine to watch.

    Its tree would hold other programs, and the first engine found there would be reported as if
    it were the target's. Refused: pid 1 unless it is itself a server or Python program (a
    container whose entry point is ``vllm serve`` is fine), processes named like an init or
    supervisor, and any other process whose tree is most of the machine."""
    try:
        proc = psutil.Process(pid)
        name = proc.name()
        own = detect_framework([tuple(proc.cmdline())])[0]
    except psutil.Error:
        return None  # gone or unreadable: open_target says so
    descendants = None
    if name in INIT_NAMES:
        reason = "an init or supervisor process"
    elif own not in ("unknown",):
        return None
    elif pid == 1:
        reason = "this machine's (or container's) init process"
    else:
        try:
            descendants = proc.children(recursive=True)
            total = len(psutil.pids())
        except psutil.Error:
            return None
        if len(descendants) < MACHINE_TREE_MIN or len(descendants) < MACHINE_TREE_SHARE * total:
            return None
        reason = f"the root of {len(descendants)} of this machine's {total} processes"
    servers = []
    try:
        for child in descendants if descendants is not None else proc.children(recursive=True):
            try:
                cmdline = tuple(child.cmdline())
            except psutil.Error:
                continue
            framework, evidence = detect_framework([cmdline])
            if framework not in ("unknown", "python") and evidence:
                servers.append(f"{child.pid} ({evidence[:40]})")
            if len(servers) == 3:
                break
    except psutil.Error:
        pass
    hint = f", e.g. {', '.join(servers)}" if servers else ""
    return (f"pid {pid} ({name}) is {reason}: its tree holds other programs, whose figures would be taken for "
            f"its own; give the inference server's own pid{hint}")


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
        module = engine_for_launcher(text)
        if module is not None:
            return module.NAME, text
    for cmdline in cmdlines:
        if cmdline and re.search(r"(^|/)python[0-9.]*$", cmdline[0]):
            return "python", " ".join(cmdline)[:120]
    return "unknown", None


def model_from_cmdline(cmdline: tuple[str, ...], framework: str) -> str | None:
    """The model a command line names: ``--model``, ``--model-path``, ``--model-id``,
    ``vllm serve MODEL``, ``trtllm-serve MODEL``, llama.cpp's ``-m X.gguf`` / ``--hf-repo``."""
    argv = list(cmdline)
    found = option_value(argv, ("--model", "--model-path", "--model-id", "--model_name_or_path", "--model-name-or-path"))
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
    value = option_value(argv, ("-m",))
    if value and (framework == "llamacpp" or value.lower().endswith(".gguf")):
        return value
    return option_value(argv, ("-hf", "--hf-repo", "-hfr"))


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


# Tree membership is re-read this often (and at once when a member vanishes): finding
# descendants means reading each tree thread's children file, or every process's stat file.
# While rescans keep finding the same tree the wait doubles, up to CHILD_SCAN_MAX_S: a server's
# tree is fixed once it has started, and a 12-thread server's rescan is a quarter of its probes.
CHILD_SCAN_S = 2.0
CHILD_SCAN_MAX_S = 8.0


@dataclass
class _Member:
    """What we keep about one process between ticks (its static facts are re-read every PORT_REFRESH_S)."""

    proc: psutil.Process
    created: float
    name: str = "?"
    ppid: int | None = None
    cmdline: tuple[str, ...] = ()
    role: str | None = None
    ports: tuple[int, ...] = ()
    static_read_at: float = -1e18
    start_ticks: int | None = None
    cpu_seconds: float | None = None
    cpu_read_at: float = 0.0
    threads: int = 1


def clean_cmdline(argv) -> tuple[str, ...]:
    """A command line without the empty strings a renamed process pads its title with.

    setproctitle writes the new title over the old argv area and fills the rest
    with NULs, so ``/proc/PID/cmdline`` reads as the title and dozens of empty
    arguments (vLLM's ``VLLM::EngineCore``). Only trailing empty strings go: an
    empty argument between others was given on purpose.
    """
    args = list(argv)
    while args and not args[-1]:
        args.pop()
    return tuple(args)


def _title(cmdline: tuple[str, ...]) -> str | None:
    """The process title an engine set (``VLLM::EngineCore``), if argv[0] is one."""
    if not cmdline:
        return None
    first = cmdline[0].strip()
    if _TITLE.match(first):
        return first
    if len(cmdline) == 1 and " " in first and _TITLE.match(first.split()[0]):
        # setproctitle may leave one argv string with spaces in it.
        return first.split()[0]
    return None


def role_of(cmdline: tuple[str, ...]) -> str | None:
    """What a process does: the title its engine set, else what its launcher is in its engine's
    tree (``vllm serve`` → ``API server``), else a known helper (``resource tracker``)."""
    title = _title(cmdline)
    if title:
        return title
    text = launcher(cmdline)
    role = role_for_launcher(engine_for_launcher(text), text)
    if role:
        return role
    joined = " ".join(cmdline)
    return next((name for pattern, name in _GENERIC_ROLES if pattern.search(joined)), None)


_PARALLEL_FIELDS = ("tensor_parallel", "pipeline_parallel", "data_parallel")


def tree_parallelism(framework: str, cmdlines: list[tuple[str, ...]]) -> tuple[dict[str, int | None], dict[str, str]]:
    """Tensor / pipeline / data-parallel degrees from the engine's command line (the first process
    of the tree launched as that engine that gives one), with reasons for those not given."""
    module = engine(framework)
    if module is None:
        reason = "not an inference engine's process tree"
        return dict.fromkeys(_PARALLEL_FIELDS), dict.fromkeys(_PARALLEL_FIELDS, reason)
    degrees: dict[str, int | None] = {}
    why: dict[str, str] = {}
    launched = [c for c in cmdlines if engine_for_launcher(launcher(c)) is module and not _title(c)]
    for name in _PARALLEL_FIELDS:
        reasons = []
        for cmdline in launched or [()]:
            found, reason = parallelism(module, cmdline)
            if found[name] is not None:
                degrees[name] = found[name]
                break
            reasons.append(reason[name])
        else:
            degrees[name] = None
            # A malformed value says more than "not given".
            why[name] = next((r for r in reasons if "is not" in r), reasons[0])
    return degrees, why


class ProcessProbe:
    """Samples the target and its descendants once per tick.

    Keeps psutil.Process objects across ticks so CPU% is measured between
    ticks (psutil needs the previous reading) and a reused pid is noticed
    by its different create time. Per tick it reads only each process's
    stat file; command lines, names and ports are re-read every
    PORT_REFRESH_S, and the set of descendants every CHILD_SCAN_S, then less
    often (up to CHILD_SCAN_MAX_S) while it stays the same; at once when a
    member exits.
    """

    def __init__(self, pid: int, clock=None) -> None:
        import time

        self.pid = pid
        self._clock = clock or time.monotonic
        self._root = open_target(pid)
        self._root_created = self._root.create_time()
        try:
            stat = _read_stat(pid)
        except (OSError, ValueError, IndexError):
            stat = None
        self._root_ticks = stat.start_ticks if stat is not None else None
        self._root_stat: _Stat | None = None  # read by _root_state, used again by _read
        self._members: dict[int, _Member] = {}
        self._scanned_at = -1e18
        self._scan_every = CHILD_SCAN_S
        self._framework: tuple[str, str | None] | None = None
        self._model_argument: str | None = None
        self._parallel: tuple[dict[str, int | None], dict[str, str]] = ({}, {})
        self._cmdlines_changed = False

    def engine_ancestor_ports(self) -> tuple[int, ...]:
        """Listening ports of the target's ancestors of the same engine, when the target is one of an
        engine's renamed children (``--pid`` of a ``VLLM::Worker``): its API server is a parent."""
        ports: list[int] = []
        listeners = Listeners()
        try:
            module = engine_for_launcher(_title(clean_cmdline(self._root.cmdline())) or "")
            if module is None:
                return ()
            for parent in self._root.parents():
                if engine_for_launcher(launcher(clean_cmdline(parent.cmdline()))) is not module:
                    break
                ports.extend(_listening_ports(parent, listeners))
        except psutil.Error:
            pass
        return tuple(dict.fromkeys(ports))

    def _root_state(self) -> str:
        """``running``, ``exited`` (gone, a zombie) or ``reused`` (the pid names another process now):
        one read of /proc/PID/stat, where psutil would read it three times."""
        stat = self._root_stat = None
        try:
            stat = _read_stat(self.pid)
        except (FileNotFoundError, ProcessLookupError):
            return "reused" if psutil.pid_exists(self.pid) else "exited"
        except (OSError, ValueError, IndexError):
            stat = None
        if stat is None or self._root_ticks is None:  # not Linux: ask psutil
            if not self._root.is_running():
                return "reused" if psutil.pid_exists(self.pid) else "exited"
            return "exited" if self._root.status() == psutil.STATUS_ZOMBIE else "running"
        if stat.start_ticks != self._root_ticks:
            return "reused"
        self._root_stat = stat  # this tick's figures for the root: its stat is not read twice
        return "exited" if stat.state in ("Z", "X", "x") else "running"

    def _exited_tree(self, reason: str) -> ProcessTree:
        return ProcessTree(root_pid=self.pid, processes=(), alive=False, why={"process": reason})

    def _rescan(self, now: float) -> None:
        threads = sum(max(1, member.threads) for member in self._members.values()) or 1
        pids = descendants(self.pid, threads)
        members: dict[int, _Member] = {self.pid: self._members.get(self.pid) or _Member(self._root, self._root_created)}
        if pids is None:  # no /proc (not Linux): psutil's own walk
            found = [(child.pid, child) for child in self._root.children(recursive=True)]
        else:
            found = [(pid, None) for pid in pids]
        for pid, child in found:
            known = self._members.get(pid)
            if known is not None and (child is None or known.proc is child):
                # A reused pid shows in its stat's start time at the next read (and is dropped then).
                members[pid] = known
                continue
            try:
                child = child or psutil.Process(pid)
                created = child.create_time()
            except psutil.Error:
                continue
            # Keep the object CPU% was primed on, unless the pid now names another process.
            members[pid] = known if known is not None and known.created == created else _Member(child, created)
        same = members.keys() == self._members.keys() and all(members[p] is self._members[p] for p in members)
        self._scan_every = min(2 * self._scan_every, CHILD_SCAN_MAX_S) if same else CHILD_SCAN_S
        self._members = members
        self._scanned_at = now

    def sample(self) -> ProcessTree:
        """One reading of the tree; a dead or replaced target gives ``alive=False`` and the reason."""
        now = self._clock()
        try:
            state = self._root_state()
            if state == "reused":
                return self._exited_tree(f"pid {self.pid} exited and was reused by another process")
            if state == "exited":
                return self._exited_tree(f"pid {self.pid} has exited")
            if now - self._scanned_at >= self._scan_every:
                self._rescan(now)
        except psutil.NoSuchProcess:
            return self._exited_tree(f"pid {self.pid} has exited")
        except psutil.AccessDenied:
            return self._exited_tree(f"pid {self.pid} can no longer be read (permission denied)")

        infos: list[ProcessInfo] = []
        vanished = []
        self._cmdlines_changed = False
        listeners = Listeners()  # read at most once this tick, by the first member due a port refresh
        for pid, member in self._members.items():
            info = self._read(member, now, listeners)
            if info is None:
                vanished.append(pid)
            elif info is not _EXITED:
                infos.append(info)
        if vanished:
            self._cmdlines_changed = True  # the tree's command lines are fewer: what they say again
            for pid in vanished:
                del self._members[pid]
            self._scanned_at = -1e18  # a member went away: look for new ones next tick
            self._scan_every = CHILD_SCAN_S

        if self._cmdlines_changed and (self._framework is None or self._framework[0] in ("unknown", "python")):
            self._framework = detect_framework([i.cmdline for i in infos])
        framework, evidence = self._framework or ("unknown", None)
        if self._model_argument is None and self._cmdlines_changed:
            for info in infos:
                found = model_from_cmdline(info.cmdline, framework)
                if found:
                    self._model_argument = _resolve_relative(found, self._root)
                    break
        if self._cmdlines_changed:
            self._parallel = tree_parallelism(framework, [i.cmdline for i in infos])
        degrees, why = self._parallel[0], dict(self._parallel[1])
        if self._model_argument is None:
            why["model_argument"] = "no --model/-m on the command line (give --model)"
        return ProcessTree(root_pid=self.pid, processes=tuple(infos), framework=framework,
                           framework_evidence=evidence, model_argument=self._model_argument,
                           tensor_parallel=degrees.get("tensor_parallel"),
                           pipeline_parallel=degrees.get("pipeline_parallel"),
                           data_parallel=degrees.get("data_parallel"), why=why)

    def _read(self, member: _Member, now: float, listeners: Listeners) -> ProcessInfo | None:
        proc = member.proc
        try:
            stat = self._root_stat if proc.pid == self.pid and self._root_stat is not None else _read_stat(proc.pid)
            if stat is not None and stat.state in ("Z", "X", "x"):
                # A child that exited and was not reaped yet: not shown (it runs nothing, holds no
                # memory, and has no command line left), but kept, so the tree is not rescanned
                # every tick while its parent leaves it unreaped.
                return _EXITED
            if now - member.static_read_at >= PORT_REFRESH_S:
                cmdline = _read_cmdline(proc.pid) if stat is not None and stat.name is not None else None
                if cmdline is None:  # not Linux, or an odd /proc: psutil's reading
                    with proc.oneshot():
                        cmdline, name, ppid = clean_cmdline(proc.cmdline()), proc.name(), proc.ppid()
                else:
                    name, ppid = _full_name(stat.name, cmdline), stat.ppid
                if cmdline != member.cmdline or member.static_read_at < 0:
                    self._cmdlines_changed = True
                member.cmdline, member.name, member.ppid = cmdline, name, ppid
                member.role = role_of(member.cmdline)
                member.ports = _listening_ports(proc, listeners)
                member.static_read_at = now
            if stat is None:
                with proc.oneshot():
                    times = proc.cpu_times()
                    stat = _Stat(times.user + times.system, proc.memory_info().rss, proc.num_threads(), None)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, ProcessLookupError, FileNotFoundError):
            return None
        except (psutil.AccessDenied, PermissionError):
            return ProcessInfo(pid=proc.pid, ppid=None, name="?", cmdline=())
        if stat.start_ticks is not None and member.start_ticks is not None and stat.start_ticks != member.start_ticks:
            return None  # the pid now names another process
        member.start_ticks = stat.start_ticks
        member.threads = stat.threads
        cpu = None
        if member.cpu_seconds is not None and now > member.cpu_read_at:
            cpu = max(0.0, (stat.cpu_seconds - member.cpu_seconds) / (now - member.cpu_read_at) * 100.0)
        member.cpu_seconds, member.cpu_read_at = stat.cpu_seconds, now
        return ProcessInfo(pid=proc.pid, ppid=member.ppid, name=member.name, cmdline=member.cmdline, role=member.role,
                           cpu_percent=cpu, rss_bytes=stat.rss_bytes, threads=stat.threads, create_time=member.created,
                           listening_ports=member.ports)


# What _read gives for a member that has exited but is still in the process table (a zombie).
_EXITED = object()


@dataclass(frozen=True)
class _Stat:
    cpu_seconds: float
    rss_bytes: int
    threads: int
    start_ticks: int | None
    state: str = "R"
    name: str | None = None  # the kernel's command name (at most 15 characters)
    ppid: int | None = None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _read_stat(pid: int) -> _Stat | None:
    """CPU time, RSS and threads from one read of /proc/PID/stat (None off Linux).

    One file per process per tick keeps a 64-process tree cheap; psutil would
    read stat and statm and call sysconf for every process.
    """
    try:
        # os.open/os.read: half the cost of a buffered file object, for a line of about 300 bytes.
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, 4096)
            while len(data) % 4096 == 0 and (more := os.read(fd, 4096)):
                data += more
        finally:
            os.close(fd)
    except FileNotFoundError:
        if not os.path.isdir("/proc/self"):
            return None  # not Linux: let psutil do it
        raise
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    close = data.rindex(b")")
    fields = data[close + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])
    return _Stat(cpu_seconds=(utime + stime) / _CLOCK_TICKS, rss_bytes=int(fields[21]) * _PAGE_SIZE,
                 threads=int(fields[17]), start_ticks=int(fields[19]), state=fields[0].decode("ascii", "replace"),
                 name=data[data.index(b"(") + 1:close].decode("utf-8", "surrogateescape"), ppid=int(fields[1]))


def _read_cmdline(pid: int) -> tuple[str, ...] | None:
    """``/proc/PID/cmdline`` as psutil splits it (NUL-separated; a title rewritten with spaces is
    split at them), without the padding of a renamed process; None where it cannot be read.

    Read directly every PORT_REFRESH_S for each process of the tree: psutil's ``oneshot`` reading
    of the command line, name and parent costs several times this one read."""
    try:
        fd = os.open(f"/proc/{pid}/cmdline", os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    except OSError:
        return None
    text = b"".join(chunks).decode("utf-8", "surrogateescape")
    if not text:
        return ()  # a zombie, or a kernel thread
    separator = "\x00" if text.endswith("\x00") else " "
    if text.endswith(separator):
        text = text[:-1]
    argv = text.split(separator)
    if separator == "\x00" and len(argv) == 1 and " " in text:  # a title with spaces, NUL-ended
        argv = text.split(" ")
    return clean_cmdline(argv)


def _full_name(name: str, cmdline: tuple[str, ...]) -> str:
    """The process name as psutil gives it: the kernel keeps 15 characters; a longer one is the
    command line's first word where that starts with them."""
    if len(name) >= 15 and cmdline:
        extended = os.path.basename(cmdline[0])
        if extended.startswith(name):
            return extended
    return name


def _listening_ports(proc: psutil.Process, listeners: Listeners | None = None) -> tuple[int, ...]:
    """TCP ports ``proc`` listens on (``listeners``: the sockets read once for the whole tree)."""
    if not os.path.isdir("/proc/self"):
        return _listening_ports_psutil(proc)
    return (listeners or Listeners()).ports_of(proc.pid)


def _listening_ports_psutil(proc: psutil.Process) -> tuple[int, ...]:
    try:
        connections = proc.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return ()
    ports = {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN and c.laddr}
    return tuple(sorted(ports))


@functools.lru_cache(maxsize=1)
def _children_files() -> bool:
    """Whether this kernel lists each task's children (``/proc/PID/task/TID/children``)."""
    return os.path.exists(f"/proc/self/task/{threading.get_native_id()}/children")


def _pids_on_host() -> list[int] | None:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return None


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read(4096)
        return int(data[data.rindex(b")") + 2:].split(None, 2)[1])
    except (OSError, ValueError, IndexError):
        return None  # gone meanwhile


def _listed_children(parent: int) -> list[int]:
    """The children each task of ``parent`` lists in ``/proc/PID/task/TID/children``."""
    try:
        tasks = os.listdir(f"/proc/{parent}/task")
    except OSError:
        return []  # gone meanwhile, or not ours
    found: list[int] = []
    for task in tasks:
        try:
            with open(f"/proc/{parent}/task/{task}/children", "rb") as handle:
                found.extend(map(int, handle.read(1 << 20).split()))
        except (OSError, ValueError):
            continue
    return found


SMALL_TREE_THREADS = 64


def descendants(pid: int, tree_threads: int = 1) -> list[int] | None:
    """Every descendant of ``pid`` (None where there is no /proc: not Linux).

    Two ways, whichever reads fewer files: each tree task's ``children`` file (one per thread of
    the tree; ``tree_threads`` is how many there were at the last reading), or every process's stat
    file on the host for its parent (what psutil does). A small server on a busy host takes the
    first; a tree of many-threaded workers on a quiet one the second."""
    if not os.path.isdir("/proc/self"):
        return None
    listed = _children_files()
    # A tree of a few dozen threads reads fewer children files than any host has processes: /proc
    # itself is listed only where the comparison could go the other way.
    on_host = None
    if not listed or tree_threads > SMALL_TREE_THREADS:
        on_host = _pids_on_host()
        if on_host is None:
            return None
    if listed and (on_host is None or tree_threads < len(on_host)):
        children_of = _listed_children
    else:
        table: dict[int, list[int]] = {}
        for other in on_host:
            parent = _parent_of(other)
            if parent is not None:
                table.setdefault(parent, []).append(other)
        children_of = lambda parent: table.get(parent, ())  # noqa: E731
    found: list[int] = []
    queue = [pid]
    seen = {pid}
    while queue:
        for child in children_of(queue.pop()):
            if child not in seen:
                seen.add(child)
                found.append(child)
                queue.append(child)
    return found
