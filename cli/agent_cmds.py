"""``infermon run``, ``infermon attach`` and ``infermon detach``: the in-process agent."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time

from infermon.cli.errors import RuntimeFailure, UserError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from infermon.cli.monitor import add_arguments

    run = sub.add_parser(
        "run", help="start a command with the agent inside it (and its Python children), and watch it",
        description="Start CMD with infermon's agent loaded in every Python process it starts (through "
        "PYTHONPATH and sitecustomize), then watch it as --pid would. The exit status is the command's.",
        usage="infermon run [OPTIONS] -- CMD [ARGS...]")
    add_arguments(run, with_pid=False)
    run.add_argument("--log", metavar="FILE", help="with the dashboard: the command's output goes here "
                     "(default: a file in the temp dir, named at exit)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    run.set_defaults(handler=run_command)

    attach = sub.add_parser("attach", help="load the agent into a running Python process (gdb or sys.remote_exec)",
                            description="Load infermon's agent into a running CPython process of yours without "
                            "restarting it. Asks first unless --yes.")
    attach.add_argument("pid", type=int)
    attach.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    attach.add_argument("--interval", type=float, default=1.0, metavar="S", help="agent publishing interval")
    attach.set_defaults(handler=attach_command)

    detach = sub.add_parser("detach", help="stop the agent in a process")
    detach.add_argument("pid", type=int)
    detach.set_defaults(handler=detach_command)


# ---------------------------------------------------------------------------------- run


def _exit_status(code: int) -> int:
    return 128 - code if code < 0 else code


def _wait_for_agent(pid: int, process: subprocess.Popen, timeout_s: float, active: bool = False) -> bool:
    """Until the command's agent publishes (with ``active``: until it has counted a token), the
    command exits, or ``timeout_s`` passes. Children's agents count too."""
    from infermon.probes.agent_channel import read_agents

    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            pids = {pid} | {c.pid for c in psutil.Process(pid).children(recursive=True)}
        except psutil.Error:
            pids = {pid}
        agents = read_agents(pids).agents
        if agents and (not active or any(a.generation_tokens_total > 0 for a in agents)):
            return True
        time.sleep(0.1)
    return False


def _sample_with(view, args: argparse.Namespace) -> None:
    """Run a headless view (``--once`` or ``--record``) on the command's process."""
    from infermon.cli import monitor

    sampler, live = monitor.open_sampler(args, own_child=True)
    try:
        view(sampler, live, args)
    finally:
        sampler.close()


# After a quit or Ctrl-C, how long the command gets for each step: the terminal's (or our) SIGINT,
# then SIGTERM; then SIGKILL. Together under 5 s, whatever the command does with its signals.
STOP_STEPS_S = (2.0, 2.0, 0.5)


def _stop_child(process: subprocess.Popen, interrupted: bool = False) -> None:
    """We started it, so we stop it, within 5 s: SIGINT (not sent again when the terminal's Ctrl-C
    already reached it, ``interrupted``), then SIGTERM, then SIGKILL, the last two to its
    descendants too. A second Ctrl-C meanwhile cannot cut this short and leave it running."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for sig, wait in zip((signal.SIGINT, signal.SIGTERM, signal.SIGKILL), STOP_STEPS_S):
            if process.poll() is not None:
                return
            if sig != signal.SIGINT:
                _signal_tree(process.pid, sig)
            elif not interrupted:
                process.send_signal(sig)
            try:
                process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
    finally:
        signal.signal(signal.SIGINT, previous)


def _signal_tree(pid: int, sig: int) -> None:
    import psutil

    try:
        members = [psutil.Process(pid)]
        members += members[0].children(recursive=True)
    except psutil.Error:
        members = []
    for member in members:
        try:
            member.send_signal(sig)
        except psutil.Error:
            pass


def _open_log(path: str):
    """``--log FILE`` to append the command's output to: a regular file, no symlink followed (the
    output must not land wherever a planted link points)."""
    import errno
    import stat

    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        reason = "a symbolic link (refused)" if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
        raise UserError(f"run: cannot write the log {path}: {reason}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"run: cannot write the log {path}: not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "ab")


def _resolve_command(program: str) -> str:
    """The executable ``program`` names (a path, or a name on PATH), or a one-line UserError."""
    if os.sep in program:
        if not os.path.exists(program):
            raise UserError(f"run: command not found: {program}")
        if os.path.isdir(program):
            raise UserError(f"run: {program} is a directory, not a command")
        if not os.access(program, os.X_OK):
            raise UserError(f"run: {program} is not executable")
        return program
    found = shutil.which(program)
    if found is None:
        raise UserError(f"run: command not found: {program}")
    return found


def run_command(args: argparse.Namespace) -> int:
    from infermon.cli import monitor
    from infermon.probes.bootstrap import agent_environment, make_bootstrap

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UserError("run: give the command after --, e.g. infermon run -- python generate.py")
    if args.json and not args.once:
        raise UserError("--json goes with --once")
    if args.once and args.record:
        raise UserError("choose one of --once and --record")
    # Everything is checked before the command starts: a bad option never leaves it running.
    monitor.check_arguments(args)
    dashboard = not args.once and not args.record
    themes = monitor.dashboard_themes(args) if dashboard else []
    if dashboard:
        monitor.check_terminal()
    _resolve_command(command[0])
    log_handle = None
    if dashboard:
        import tempfile

        log_path = args.log or tempfile.mkstemp(prefix="infermon-run-", suffix=".log")[1]
        log_handle = _open_log(log_path)
    folder = make_bootstrap()
    env = agent_environment(folder, args.interval)
    try:
        try:
            if dashboard:
                process = subprocess.Popen(command, env=env, stdout=log_handle, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL)
            else:
                process = subprocess.Popen(command, env=env)
        except OSError as exc:
            raise UserError(f"run: cannot start {command[0]}: {exc.strerror or exc}") from None
        args.pid = process.pid
        try:
            if args.once:
                # One report of a run: wait until the program is generating, not importing torch.
                if not _wait_for_agent(process.pid, process, timeout_s=max(30.0, 10 * args.interval), active=True):
                    if process.poll() is None:
                        print("infermon: no tokens counted yet (sampling anyway)", file=sys.stderr)
                if process.poll() is None:
                    _sample_with(monitor._once, args)
                else:
                    print("infermon: the command exited before it could be sampled", file=sys.stderr)
                return _exit_status(process.wait())
            if args.record:
                _wait_for_agent(process.pid, process, timeout_s=max(10.0, 5 * args.interval))
                if process.poll() is None:
                    _sample_with(monitor._record, args)
                if process.poll() is None:
                    # The recorder stopped before the command did: Ctrl-C (which the terminal sent
                    # the command too) or SIGTERM. It ends now, whatever it does with SIGINT.
                    _stop_child(process, interrupted=True)
                return _exit_status(process.wait())
            sampler, live = monitor.open_sampler(args, own_child=True)
            from infermon.tui.app import InfermonApp
            from infermon.tui.sources import LiveSource

            app = InfermonApp(LiveSource(sampler, live), theme=args.theme, themes=themes,
                              target=f"pid {process.pid}")
            app.run(mouse=not args.no_mouse)
            _stop_child(process)
            print(app.summary_text())
            print(f"infermon: the command's output is in {log_path}")
            return _exit_status(process.wait())
        except KeyboardInterrupt:
            # The terminal sent SIGINT to the whole process group: the command has it too.
            _stop_child(process, interrupted=True)
            return _exit_status(process.wait())
        except BaseException:
            _stop_child(process)
            raise
    finally:
        if log_handle is not None:
            log_handle.close()
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------- attach / detach


def _confirm(pid: int, method: str) -> bool:
    if not sys.stdin.isatty():
        raise UserError(f"attach: confirm with --yes (no terminal to ask on) to load the agent into pid {pid}")
    print(f"infermon will load its agent into pid {pid} using {method}: the process pauses for a moment,\n"
          "then runs `import infermon_agent; infermon_agent.start()` at its next safe point. The agent\n"
          "reads counters and torch allocator figures; `infermon detach` stops it.")
    answer = input("Continue? [y/N] ").strip().lower()
    return answer in ("y", "yes")


def _target_owner(pid: int) -> tuple[int, int] | None:
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc.uids().effective, proc.gids().effective
    except psutil.Error:
        return None


# nice's lowest priority. The process we attach to is usually a server that keeps every core busy,
# and the attach command's own CPU (about half a second there, gdb's included) comes out of its time.
LOWEST_PRIORITY = 19


def yield_to_the_target() -> int | None:
    """Run the rest of this command at the lowest CPU priority, so it takes only time the host has
    to spare; returns the priority it had (None: unchanged).

    On a 2-core host kept busy by a vLLM server, the server generated 0.63–1.08 times its rate while
    attach ran at normal priority, and attaching to an unrelated sleeping process dipped it as much:
    the dip was the command's CPU, not what it does to the worker. gdb is the exception (see
    :class:`PrioritySpawner`): it is started at the priority the command had."""
    try:
        before = os.getpriority(os.PRIO_PROCESS, 0)
        if before >= LOWEST_PRIORITY:
            return None
        os.setpriority(os.PRIO_PROCESS, 0, LOWEST_PRIORITY)
        return before
    except (OSError, AttributeError):  # not permitted (a seccomp profile), or not a POSIX host
        return None


class PrioritySpawner:
    """Starts processes at the CPU priority this thread has now, whatever it is lowered to later.

    Linux keeps a priority per thread, a child inherits the one of the thread that starts it, and
    an unprivileged process cannot raise its priority again: so processes are started by a thread
    made before the lowering. gdb needs this: at the lowest priority beside a server that keeps
    every core busy, its 0.1 s of CPU took 2 to 15 s (over 30 s once), and all that while the
    attach waits; the target is stopped for the call alone either way.

    A daemon thread, not a pool: a pool's exit hook joins its thread, and a Ctrl-C during that
    join printed a traceback after the command had finished."""

    def __init__(self) -> None:
        import queue
        import threading

        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="infermon-spawner", daemon=True).start()

    def _serve(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                return
            args, kwargs, result, done = request
            try:
                result["process"] = subprocess.Popen(*args, **kwargs)
            except BaseException as exc:  # handed to the caller, raised there
                result["error"] = exc
            done.set()

    def popen(self, *args, **kwargs) -> subprocess.Popen:
        """``subprocess.Popen(*args, **kwargs)``, started by the spawner's thread. A Ctrl-C while
        it starts ends the new process at once (it is microseconds past exec: gdb takes tens of
        milliseconds to reach its target) and is raised then."""
        import threading

        result: dict = {}
        done = threading.Event()
        self._requests.put((args, kwargs, result, done))
        interrupted = False
        while not done.is_set():
            try:
                done.wait()
            except KeyboardInterrupt:
                interrupted = True
        if "error" in result:
            raise result["error"]
        process = result["process"]
        if interrupted:
            process.kill()
            process.wait()
            raise KeyboardInterrupt
        return process

    def close(self) -> None:
        self._requests.put(None)


@contextlib.contextmanager
def yielding_to_the_target():
    """The lowest CPU priority for what runs inside, then the priority this thread had, where it
    may be raised again (root); yields a :class:`PrioritySpawner` that starts processes (gdb) at
    the priority the thread had before. Linux keeps a priority per thread and a child inherits its
    starter's: a caller that runs the command in-process (a test session) would otherwise start
    everything after it at the lowest priority. An unprivileged process cannot raise it again; the
    command's own process ends here, so only such a caller keeps it."""
    spawner = PrioritySpawner()
    before = yield_to_the_target()
    try:
        yield spawner
    finally:
        spawner.close()
        if before is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, 0, before)
            except OSError:
                pass  # not permitted without privilege: see above


def _priority() -> int:
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (OSError, AttributeError):
        return 0


def _until(seconds: float, done, every_s: float = 0.05) -> bool:
    """Whether ``done()`` came true within ``seconds``, asked every ``every_s`` and once more at the
    end: at the lowest priority on a busy host this process may not run for seconds, and a deadline
    that passed meanwhile must not hide that the agent answered."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(every_s)
    return bool(done())


def attach_command(args: argparse.Namespace) -> int:
    from infermon.probes.process import TargetError, open_target

    # The checks first: they refuse at once, and leave an in-process caller's priority alone.
    if not 0.05 <= args.interval <= 60:
        raise UserError("--interval must be between 0.05 and 60 seconds")
    try:
        open_target(args.pid)
    except TargetError as exc:
        raise UserError(str(exc)) from None
    with yielding_to_the_target() as spawner:
        return _attach(args, spawner)


def _attach(args: argparse.Namespace, spawner: PrioritySpawner) -> int:
    from infermon.probes.agent_channel import find_agent
    from infermon.probes.bootstrap import make_bootstrap
    from infermon.probes.inject import InjectError, inject, python_version

    running, _, _ = find_agent(args.pid)
    if running is not None:
        print(f"infermon: pid {args.pid} already has an agent")
        return 0
    version = python_version(args.pid)
    method = "sys.remote_exec" if version and version >= (3, 14) and sys.version_info[:2] == version else "gdb"
    if not args.yes and not _confirm(args.pid, method):
        print("infermon: not attached")
        return 1
    # A private folder the target's user can read (root attaching to another user's process hands
    # it over); the bootstrap removes it once the target has imported the agent.
    owner = _target_owner(args.pid)
    parent = None
    if owner is not None and owner[0] != os.geteuid():
        # Our temp dir may be closed to the target's user: use the one its environment names.
        from infermon.probes.agent_channel import temp_root_of

        parent = temp_root_of(args.pid)
    try:
        folder = make_bootstrap(parent=parent, owner=owner, attach_interval_s=args.interval)
    except OSError as exc:
        raise RuntimeFailure(f"attach: cannot prepare the agent's folder: {exc.strerror or exc}") from None
    if sys.stderr.isatty():  # at the lowest priority on a busy host this can take seconds: say what it does
        lowest = " (at the lowest CPU priority)" if _priority() >= LOWEST_PRIORITY else ""
        print(f"infermon: loading the agent into pid {args.pid} via {method}{lowest}…", file=sys.stderr, flush=True)
    try:
        used = inject(args.pid, folder, args.interval, popen=spawner.popen)
    except InjectError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeFailure(f"attach: {exc}") from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    waited = max(5.0, 3 * args.interval)
    if _until(waited, lambda: find_agent(args.pid)[0] is not None):
        shutil.rmtree(folder, ignore_errors=True)
        print(f"infermon: agent running in pid {args.pid} (via {used}); watch it with infermon --pid {args.pid}")
        return 0
    if not os.path.exists(folder):
        raise RuntimeFailure(f"attach: pid {args.pid} loaded the agent (via {used}) but it did not start: "
                             "it found no usable channel directory (see infermon --pid for why)")
    raise RuntimeFailure(f"attach: queued the agent in pid {args.pid} via {used}, but it has not started within "
                         f"{waited:.0f} s: the main thread has run no Python code since (blocked in a long call?). "
                         "It starts when it next does; check with infermon --pid")


def detach_command(args: argparse.Namespace) -> int:
    from infermon.probes.process import TargetError, open_target

    try:
        open_target(args.pid)
    except TargetError as exc:
        raise UserError(str(exc)) from None
    with yielding_to_the_target():
        return _detach(args)


def _detach(args: argparse.Namespace) -> int:
    from infermon.probes.agent_channel import find_agent, request_stop

    running, _, why = find_agent(args.pid)
    if running is None:
        detail = f" ({why})" if why and "stale" in why else ""
        raise UserError(f"detach: pid {args.pid} has no running agent{detail}")
    try:
        request_stop(args.pid)
    except (OSError, LookupError, ValueError) as exc:
        raise RuntimeFailure(f"detach: cannot ask the agent in pid {args.pid} to stop: {exc}") from None
    if _until(10.0, lambda: find_agent(args.pid)[0] is None):
        print(f"infermon: agent in pid {args.pid} stopped")
        return 0
    raise RuntimeFailure(f"detach: the agent in pid {args.pid} did not stop within 10 s")
