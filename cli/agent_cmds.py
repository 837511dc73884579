"""``infermon run``, ``infermon attach`` and ``infermon detach``: the in-process agent."""

from __future__ import annotations

import argparse
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

    sampler, live = monitor.open_sampler(args)
    try:
        view(sampler, live, args)
    finally:
        sampler.close()


def _stop_child(process: subprocess.Popen) -> None:
    """We started it, so on quit we stop it: SIGINT, then SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGINT, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


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
    dashboard = not args.once and not args.record
    themes = monitor.dashboard_themes(args) if dashboard else []
    if dashboard:
        monitor.check_terminal()
    if shutil.which(command[0]) is None and not os.path.exists(command[0]):
        raise UserError(f"run: command not found: {command[0]}")
    folder = make_bootstrap()
    env = agent_environment(folder, args.interval)
    log_handle = None
    try:
        if dashboard:
            import tempfile

            log_path = args.log or tempfile.mkstemp(prefix="infermon-run-", suffix=".log")[1]
            log_handle = open(log_path, "ab")
            process = subprocess.Popen(command, env=env, stdout=log_handle, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        else:
            process = subprocess.Popen(command, env=env)
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
                return _exit_status(process.wait())
            sampler, live = monitor.open_sampler(args)
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
            try:
                return _exit_status(process.wait(timeout=10))
            except subprocess.TimeoutExpired:
                _stop_child(process)
                return _exit_status(process.wait())
        except UserError:
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


def attach_command(args: argparse.Namespace) -> int:
    from infermon.probes.agent import channel_dir, ensure_channel, record_path
    from infermon.probes.bootstrap import make_bootstrap
    from infermon.probes.inject import InjectError, inject, python_version
    from infermon.probes.process import TargetError, open_target

    try:
        open_target(args.pid)
    except TargetError as exc:
        raise UserError(str(exc)) from None
    if not 0.05 <= args.interval <= 60:
        raise UserError("--interval must be between 0.05 and 60 seconds")
    if os.path.exists(record_path(args.pid)):
        print(f"infermon: pid {args.pid} already has an agent")
        return 0
    version = python_version(args.pid)
    method = "sys.remote_exec" if version and version >= (3, 14) and sys.version_info[:2] == version else "gdb"
    if not args.yes and not _confirm(args.pid, method):
        print("infermon: not attached")
        return 1
    # The bootstrap lives in our private channel directory; the target imports it once.
    folder = make_bootstrap(parent=ensure_channel(channel_dir()))
    try:
        used = inject(args.pid, folder, args.interval)
    except InjectError as exc:
        raise RuntimeFailure(f"attach: {exc}") from None
    deadline = time.monotonic() + max(5.0, 3 * args.interval)
    while time.monotonic() < deadline:
        if os.path.exists(record_path(args.pid)):
            print(f"infermon: agent running in pid {args.pid} (via {used}); watch it with infermon --pid {args.pid}")
            return 0
        time.sleep(0.05)
    print(f"infermon: injected into pid {args.pid} via {used}; the agent starts when its main thread next runs "
          "Python code")
    return 0


def detach_command(args: argparse.Namespace) -> int:
    from infermon.probes.agent import record_path
    from infermon.probes.agent_channel import request_stop
    from infermon.probes.process import TargetError, open_target

    try:
        open_target(args.pid)
    except TargetError as exc:
        raise UserError(str(exc)) from None
    if not os.path.exists(record_path(args.pid)):
        raise UserError(f"detach: pid {args.pid} has no running agent")
    request_stop(args.pid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not os.path.exists(record_path(args.pid)):
            print(f"infermon: agent in pid {args.pid} stopped")
            return 0
        time.sleep(0.05)
    raise RuntimeFailure(f"detach: the agent in pid {args.pid} did not stop within 10 s")
