"""Load the agent into a running CPython process: ``sys.remote_exec`` (3.14+) or gdb.

gdb is used as memray and pyrasite do, but carefully: nothing is allocated with the target's
malloc (which the stopped thread may be inside). A page is mapped with mmap (a plain system
call), the bootstrap code is written into it through ptrace, and ``Py_AddPendingCall`` asks the
interpreter to run it at its next safe point, on the main thread, with the GIL held.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass


class InjectError(Exception):
    """Attaching is impossible here; the message says why and what to do instead, in one line."""


@dataclass(frozen=True)
class Target:
    pid: int
    python: tuple[int, int] | None


# A CPython's sys.version as Py_GetVersion() formats it into a static buffer at start-up:
# "3.11.2 (main, Mar 13 2023, 12:18:29) [GCC 12.2.0]".
_VERSION_IN_MEMORY = re.compile(rb"(?<![\d.])(3)\.(\d{1,2})\.\d{1,2}(?:(?:a|b|rc)\d{1,2})?\+? \([^)\x00]{1,100}\) \[")
MAX_MAPS_BYTES = 16 * 1024 * 1024
MAX_MEMORY_SCAN_BYTES = 64 * 1024 * 1024


def python_version(pid: int) -> tuple[int, int] | None:
    """major.minor of the CPython in ``pid``, or None if it is none, found without running
    anything of the target (its binary may be anyone's, and we may be root): the name of its
    executable or libpython, the version tag of extension modules it loaded (``/proc/PID/maps``),
    else the ``sys.version`` string in its own memory (a renamed, statically linked build)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = ""
    found = re.search(r"python(\d)\.(\d+)", os.path.basename(exe))
    if found:
        return int(found.group(1)), int(found.group(2))
    from infermon.probes.bounded import read_proc

    try:
        maps = read_proc(f"/proc/{pid}/maps", MAX_MAPS_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
    for pattern in (r"libpython(\d)\.(\d+)", r"\.cpython-(\d)(\d{1,2})-", r"/python(\d)\.(\d+)/"):
        found = re.search(pattern, maps)
        if found:
            return int(found.group(1)), int(found.group(2))
    return _version_in_memory(pid, exe, maps)


def _version_in_memory(pid: int, exe: str, maps: str) -> tuple[int, int] | None:
    """Search the writable data of the executable's own mappings (and the bss after them) for the
    ``sys.version`` string: reading /proc/PID/mem needs the same permission as attaching."""
    regions, previous_was_exe = [], False
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 5:
            continue
        path = parts[5].strip() if len(parts) == 6 else ""
        start, _, end = parts[0].partition("-")
        if path == exe and exe and parts[1].startswith("rw"):
            regions.append((int(start, 16), int(end, 16)))
            previous_was_exe = True
            continue
        if previous_was_exe and not path and parts[1].startswith("rw"):
            regions.append((int(start, 16), int(end, 16)))  # the bss right after the data segment
        previous_was_exe = path == exe and bool(exe)
    if not regions:
        return None
    budget = MAX_MEMORY_SCAN_BYTES
    try:
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
            for start, end in regions:
                size = min(end - start, budget)
                if size <= 0:
                    break
                budget -= size
                try:
                    memory.seek(start)
                    data = memory.read(size)
                except (OSError, OverflowError, ValueError):
                    continue
                found = _VERSION_IN_MEMORY.search(data or b"")
                if found:
                    return int(found.group(1)), int(found.group(2))
    except OSError:
        return None
    return None


def ptrace_problem(pid: int) -> str | None:
    """Why the kernel would refuse to ptrace ``pid``, if we can tell beforehand."""
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope", encoding="ascii") as handle:
            scope = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return None
    if scope >= 3:
        return ("ptrace is disabled on this host (kernel.yama.ptrace_scope=3): start the program with "
                "`infermon run -- …` instead")
    if os.geteuid() == 0:
        return None
    if scope == 2:
        return ("only root may ptrace here (kernel.yama.ptrace_scope=2): run infermon attach as root, "
                "or start the program with `infermon run -- …`")
    if scope == 1 and not _is_descendant(pid):
        return ("the kernel lets you ptrace only your own child processes (kernel.yama.ptrace_scope=1): "
                "run as root, `sudo sysctl kernel.yama.ptrace_scope=0`, or start it with `infermon run -- …`")
    return None


def _is_descendant(pid: int) -> bool:
    me = os.getpid()
    try:
        import psutil

        return any(p.pid == me for p in psutil.Process(pid).parents())
    except Exception:
        return False


def bootstrap_code(folder: str, interval_s: float) -> str:
    """What runs inside the target: import the agent from ``folder`` (writing no bytecode there),
    start it, tidy sys.path and remove ``folder``, leaving one name in ``__main__`` deleted again."""
    return (
        "def _infermon_attach():\n"
        "    import os, sys\n"
        f"    folder = {folder!r}\n"
        "    bytecode = sys.dont_write_bytecode\n"
        "    try:\n"
        "        sys.path.insert(0, folder)\n"
        "        sys.dont_write_bytecode = True\n"
        "        import infermon_agent\n"
        "    except Exception:\n"
        "        return\n"
        "    finally:\n"
        "        sys.dont_write_bytecode = bytecode\n"
        "        try:\n"
        "            sys.path.remove(folder)\n"
        "        except ValueError:\n"
        "            pass\n"
        "        try:\n"
        "            for name in os.listdir(folder):\n"
        "                os.unlink(os.path.join(folder, name))\n"
        "            os.rmdir(folder)\n"
        "        except OSError:\n"
        "            pass\n"
        "    try:\n"
        f"        infermon_agent.start({interval_s!r})\n"
        "    except Exception:\n"
        "        pass\n"
        "try:\n"
        "    _infermon_attach()\n"
        "finally:\n"
        "    del _infermon_attach\n"
    )


# The target is stopped from gdb's attach to its detach, and reading every shared library's symbols
# happens in between: a process that maps torch stayed stopped for seconds (35 s on a busy 2-core
# host, where a vLLM worker generated nothing meanwhile and its engine core gave up on it). gdb
# reads the executable before it attaches and, once attached, only libc's and libpython's symbols
# (mmap, Py_AddPendingCall, PyRun_SimpleString): about a second in all on that host.
# gdb reads the pattern as a POSIX basic regex: alternation is ``\|`` (a bare ``|`` is a literal,
# which matched no library, and a Python built with --enable-shared then had no C API in sight).
ONLY_NEEDED_SYMBOLS = r"sharedlibrary libc[.]so\|libpython"


def quick_attach_options(pid: int, no_libraries: str | None = None) -> list[str]:
    """gdb options that keep the target stopped as briefly as possible (see ONLY_NEEDED_SYMBOLS).

    ``no_libraries``: a path that does not exist, in a folder only we can write, given as gdb's
    sysroot when the called addresses are already known. Even with ``auto-solib-add off`` gdb opens
    every library the target maps once attached (about 100 for a process that imported torch:
    0.2 s of CPU with the target stopped, against 0.07 s for gdb's start); with no files to open it
    only warns, and the target is stopped for the call alone."""
    options = ["-iex", "set auto-solib-add off"]
    if no_libraries is not None:
        options += ["-iex", f"set sysroot {no_libraries}"]
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return options
    return [*options, exe]


_CALL_PROBLEMS: dict[str, str | None] = {}


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (the first ``flags`` line of /proc/cpuinfo; empty where there is none)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:  # no /proc/cpuinfo (not Linux): no flags known
        pass
    return frozenset()


def gdb_call_problem(gdb: str, timeout_s: float = 20.0, flags: frozenset[str] | None = None) -> str | None:
    """Why gdb cannot call a function in a process and hand it back intact on this machine, or None.

    gdb 13 cannot write back the extended register state of CPUs with AMX tiles ("Couldn't write
    extended state status"), and a call that fails that way leaves the process with broken
    registers (a syscall it was in returns error 514 to Python). Attaching then would harm the
    target; refusing does not. On a CPU with AMX, gdb is tried once on a throwaway child
    (``sleep``), at the lowest priority: on a busy host that try took 10 s of CPU the target
    would otherwise have had (its generation rate fell by a tenth meanwhile). A CPU without AMX
    has no such state to restore and is not tried.
    """
    if gdb in _CALL_PROBLEMS:
        return _CALL_PROBLEMS[gdb]
    flags = cpu_flags() if flags is None else flags
    if not any(flag.startswith("amx") for flag in flags):
        _CALL_PROBLEMS[gdb] = None
        return None
    sleeper = shutil.which("sleep")
    if sleeper is None:
        return None
    child = subprocess.Popen([sleeper, "60"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        nice = shutil.which("nice")
        result = subprocess.run([*([nice, "-n", "19"] if nice else []), gdb, "-nx", "-batch", "-q",
                                 "-iex", "set auto-load off", *quick_attach_options(child.pid),
                                 "-p", str(child.pid), "-ex", "sharedlibrary libc[.]so",
                                 "-ex", "print (int)getpid()", "-ex", "detach", "-ex", "quit"],
                                capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
        output = result.stdout + result.stderr
    except (OSError, subprocess.TimeoutExpired):
        output = ""
    finally:
        child.kill()
        child.wait()
    problem = None
    if "extended state" in output:
        problem = AMX_PROBLEM
    elif f"= {child.pid}" not in output and "ptrace" not in output and "not permitted" not in output:
        # The try did not finish (a host too busy to give it 20 s at the lowest priority, or gdb
        # failed otherwise): on a CPU with AMX, not knowing is reason enough not to call into a
        # process. (A refused ptrace is left to the attach itself, which explains it.)
        problem = ("could not check that gdb can call into a process safely on this CPU (it has AMX tiles, which "
                   "gdb 13 cannot restore): start the program with `infermon run -- …`, or use Python 3.14+ "
                   "(sys.remote_exec) or a newer gdb")
    _CALL_PROBLEMS[gdb] = problem
    return problem


AMX_PROBLEM = ("this gdb cannot restore this CPU's extended register state (AMX) after calling into a process, "
               "which would corrupt it: start the program with `infermon run -- …`, or use Python 3.14+ "
               "(sys.remote_exec) or a newer gdb")


# The functions gdb calls in the target, by the file that exports them (the executable when none
# matches: a statically linked CPython).
CALLED = {r"/libc[.]so|/libc-[0-9.]+[.]so": ("mmap",), r"/libpython3": ("Py_AddPendingCall", "PyRun_SimpleString")}


def gdb_script(code: str, addresses: dict[str, int] | None = None) -> str:
    """gdb commands that queue ``code`` as a pending call without using the target's malloc.

    With ``addresses`` (mmap, Py_AddPendingCall, PyRun_SimpleString, found before attaching by
    :mod:`infermon.probes.elf_symbols`) gdb calls them and reads no symbols while the target is
    stopped; without, it reads libc's and libpython's symbols to find them."""
    data = code.encode() + b"\0"
    if len(data) > 4096:
        raise InjectError("bootstrap code too long")
    data += b"\0" * (-len(data) % 8)
    known = addresses is not None and all(name in addresses for names in CALLED.values() for name in names)

    def function(name: str) -> str:
        return f"{addresses[name]:#x}" if known else name

    lines = ["set pagination off", "set confirm off", "set unwindonsignal on"]
    if not known:
        lines.append(ONLY_NEEDED_SYMBOLS)
    lines += [f"set $buf = ((void* (*)(void*, unsigned long, int, int, int, long)){function('mmap')})(0, 4096, 3, 34, -1, 0)",
              'if $buf == (void*)-1\n  echo INFERMON-MMAP-FAILED\\n\n  detach\n  quit\nend']
    for offset in range(0, len(data), 8):
        word = int.from_bytes(data[offset:offset + 8], "little", signed=True)
        lines.append(f"set {{long}}($buf + {offset}) = {word}")
    lines.append(f"set $rc = ((int (*)(int (*)(void*), void*)){function('Py_AddPendingCall')})"
                 f"((int (*)(void*)){function('PyRun_SimpleString')}, (void*)$buf)")
    lines.append('printf "INFERMON-PENDING %d\\n", $rc')
    lines += ["detach", "quit"]
    return "\n".join(lines) + "\n"


def _explain_gdb_failure(output: str) -> str:
    if "Operation not permitted" in output or "ptrace: " in output:
        return ("the kernel refused ptrace (in a container without CAP_SYS_PTRACE? add --cap-add=SYS_PTRACE, "
                "or start the program with `infermon run -- …`)")
    if re.search(r'No symbol "(Py|mmap)', output):
        return "could not find the Python C API in the process (a stripped or unusual Python build)"
    if "Couldn't write extended state" in output or "Couldn't write registers" in output:
        return ("gdb cannot call functions in the process on this machine (ptrace cannot restore the CPU's "
                "extended register state: a VM or kernel limitation); start the program with `infermon run -- …`")
    if "INFERMON-MMAP-FAILED" in output:
        return "could not map a page in the process"
    last = [line for line in output.splitlines() if line.strip()][-1:] or ["unknown error"]
    return f"gdb failed: {last[0][:160]}"


# How long gdb may take before it is interrupted. It needs about 0.1 s of CPU, but beside a server
# that keeps every core busy it waits for one like any process: 0.5 to 6 s of wall time at normal
# priority on a 2-core host under vLLM (where `python3 -c pass` took up to 10 s). Interrupting it
# is safe (see run_gdb), so the limit only has to tell stuck from slow.
GDB_TIMEOUT_S = 60.0
# After an interrupt, how long gdb has to abandon a call it is in and detach before it is ended.
GDB_UNWIND_S = 10.0


def run_gdb(argv: list[str], pid: int, timeout_s: float = GDB_TIMEOUT_S, popen=subprocess.Popen,
            unwind_s: float = GDB_UNWIND_S) -> str:
    """Run gdb (``argv``, attached to ``pid``) to its end and return what it printed.

    gdb is never killed while it may be inside a call into the target: the called function would
    return to the breakpoint gdb placed, with nobody left to catch it, and the target dies
    (SIGSEGV, seen with a Python process). So on the time limit, or on Ctrl-C, gdb is *interrupted*
    (SIGINT): with ``unwindonsignal on`` it abandons the call, restores the registers and detaches.
    Only a gdb that has not ended ``unwind_s`` later is killed, and a target it left stopped that was
    running before is continued. gdb runs in its own session, so a Ctrl-C at the terminal reaches it
    only through this function, once.

    ``popen``: starts the process (the caller's, to start gdb at the priority the command had
    before it yielded the CPU to the target)."""
    was_stopped = _stopped(pid)
    process = None
    try:
        process = popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        text=True, errors="replace", start_new_session=True)
        output, _ = process.communicate(timeout=timeout_s)
        return output
    except subprocess.TimeoutExpired:
        if _end_gdb(process, pid, was_stopped, unwind_s):
            raise InjectError(f"gdb did not finish within {timeout_s:.0f} s; it was interrupted and detached "
                              f"(pid {pid} runs as before)") from None
        raise InjectError(f"gdb did not finish within {timeout_s:.0f} s, nor detach within {unwind_s:.0f} s of "
                          f"an interrupt, and was ended: check that pid {pid} still runs") from None
    except BaseException:  # Ctrl-C (or any other way out): leave the target as it was, then go
        if process is not None:
            _end_gdb(process, pid, was_stopped, unwind_s)
        raise


def _end_gdb(process: subprocess.Popen, pid: int, was_stopped: bool, unwind_s: float) -> bool:
    """Interrupt gdb, give it ``unwind_s`` to detach, then end it; continue ``pid`` if gdb left it
    stopped and it was running before (see :func:`run_gdb`). Whether the interrupt alone ended it.
    A second Ctrl-C meanwhile is held back: leaving now could cost the target its life."""
    import signal

    interrupted = False
    for sig, wait_s in ((signal.SIGINT, unwind_s), (signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(OSError):  # gdb ended meanwhile: nothing to signal
            process.send_signal(sig)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                process.communicate(timeout=max(0.0, deadline - time.monotonic()))
                break
            except subprocess.TimeoutExpired:
                break
            except KeyboardInterrupt:
                continue
        if process.poll() is not None:
            interrupted = sig == signal.SIGINT
            break
    if not was_stopped and _stopped(pid):
        with contextlib.suppress(OSError):  # the target exited meanwhile: nothing left to continue
            os.kill(pid, signal.SIGCONT)
    return interrupted


def _stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped (``T``) or held by a tracer (``t``): /proc/PID/stat's state."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
        return data[data.rindex(b")") + 2:][:1] in (b"T", b"t")
    except (OSError, ValueError):
        return False


def inject_with_gdb(pid: int, code: str, timeout_s: float = GDB_TIMEOUT_S, popen=subprocess.Popen) -> None:
    gdb = shutil.which("gdb")
    if gdb is None:
        raise InjectError("gdb is not installed (e.g. `apt-get install gdb`), or start the program with "
                          "`infermon run -- …`")
    problem = gdb_call_problem(gdb)
    if problem:
        raise InjectError(problem)
    from infermon.probes.elf_symbols import resolve

    addresses = resolve(pid, CALLED)
    known = all(name in addresses for names in CALLED.values() for name in names)
    folder = tempfile.mkdtemp(prefix="infermon-gdb-")  # 0700: nobody else can put files in it
    script = os.path.join(folder, "attach.gdb")
    try:
        with open(script, "w") as handle:
            handle.write(gdb_script(code, addresses))
        no_libraries = os.path.join(folder, "no-libraries") if known else None
        # gdb must load nothing the target's owner controls: no auto-loaded scripts or
        # libthread_db from the target's directories (we may be root), no debuginfod download.
        output = run_gdb([gdb, "-nx", "-iex", "set auto-load off", "-iex", "set debuginfod enabled off",
                          *quick_attach_options(pid, no_libraries), "-p", str(pid), "-batch", "-q", "-x", script],
                         pid, timeout_s, popen)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    match = re.search(r"INFERMON-PENDING (-?\d+)", output)
    if match is None:
        raise InjectError(_explain_gdb_failure(output))
    if int(match.group(1)) != 0:
        raise InjectError("the interpreter refused the pending call (its queue is full; try again)")


def inject_with_remote_exec(pid: int, folder: str) -> None:
    """Python 3.14+: the interpreter runs the script at its next safe point (same version needed).
    The script is ``attach.py`` in the bootstrap ``folder`` (readable by the target's user, written
    by :func:`make_bootstrap`), and removes the folder once run."""
    path = os.path.join(folder, "attach.py")
    if not os.path.isfile(path):
        raise InjectError("the bootstrap folder has no attach.py")
    try:
        sys.remote_exec(pid, path)  # type: ignore[attr-defined]
    except (OSError, RuntimeError, ValueError) as exc:
        raise InjectError(f"sys.remote_exec failed: {exc}") from None


def inject(pid: int, folder: str, interval_s: float, popen=subprocess.Popen) -> str:
    """Load the agent from ``folder`` into ``pid``; returns the method used. ``popen`` starts gdb
    (see :func:`run_gdb`)."""
    version = python_version(pid)
    if version is None:
        raise InjectError(f"pid {pid} is not a CPython process (attach needs Python; engines with metrics "
                          "need no agent: use --pid)")
    problem = ptrace_problem(pid)  # both methods need the kernel's permission to trace
    if problem:
        raise InjectError(problem)
    code = bootstrap_code(folder, interval_s)
    if version >= (3, 14) and sys.version_info[:2] == version and hasattr(sys, "remote_exec"):
        inject_with_remote_exec(pid, folder)
        return "sys.remote_exec"
    inject_with_gdb(pid, code, popen=popen)
    return "gdb"
