"""``infermon`` entry point: parse the command line, dispatch, turn every failure into one line."""

from __future__ import annotations

import argparse
import sys

from infermon.cli.errors import RuntimeFailure, UserError

PROG = "infermon"


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; we print one line and exit 2. Options are never
    abbreviated: a prefix such as ``--host`` would otherwise be matched against ``--host-bandwidth``
    of the parser above a subcommand."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message} (see --help)")


def _version() -> str:
    from importlib import metadata  # only for --version: finding the distribution costs ~0.1 s

    try:
        return metadata.version("infermon")
    except metadata.PackageNotFoundError:
        return "unknown"


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0,
                         help=help or "show the program's version number and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{PROG} {_version()}")
        parser.exit()


# Each command's module, in the order of the help. A command names its own module: the others are
# not imported. `infermon attach` on a busy 2-core host spent 6 s importing what calc and the
# dashboard need, CPU taken from the very server it was attaching to.
COMMAND_MODULES = (("calc", "calc_cmd"), ("calibrate", "calibrate_cmd"), ("run", "agent_cmds"),
                   ("attach", "agent_cmds"), ("detach", "agent_cmds"), ("replay", "replay_cmd"),
                   ("diff", "replay_cmd"), ("demo", "demo_cmd"), ("export", "export_cmd"))


def _command_of(argv: list[str] | None) -> str | None:
    """The subcommand ``argv`` starts with (None: options first, the dashboard, or no arguments)."""
    first = (sys.argv[1:] if argv is None else argv)[:1]
    names = {name for name, _ in COMMAND_MODULES}
    return first[0] if first and first[0] in names else None


def build_parser(argv: list[str] | None = None, *, every_command: bool = True) -> argparse.ArgumentParser:
    """The command line's parser: every command's, or (``every_command=False``) only that of the
    command ``argv`` starts with, when it starts with one."""
    import importlib

    parser = OneLineParser(
        prog=PROG,
        description="A terminal monitor for LLM inference: tokens/s, bandwidth and FLOP/s against the roofline.",
    )
    parser.add_argument("--version", action=_VersionAction)
    from infermon.cli import monitor  # the dashboard's options: their defaults are every command's too

    monitor.add_arguments(parser)
    chosen = None if every_command else _command_of(argv)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    added: set[str] = set()
    for name, module in COMMAND_MODULES:
        if module in added or (chosen is not None and name != chosen):
            continue
        added.add(module)
        loaded = importlib.import_module(f"infermon.cli.{module}")
        (getattr(loaded, "add_parsers", None) or loaded.add_parser)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 runtime failure, 2 bad input)."""
    try:
        parser = build_parser(argv, every_command=False)
        args = parser.parse_args(argv)
        if not getattr(args, "handler", None):
            if getattr(args, "pid", None) is not None:
                from infermon.cli import monitor

                return monitor.run(args)
            parser.print_help()
            return 0
        return int(args.handler(args) or 0)
    except (UserError, RuntimeFailure) as exc:
        print(f"{PROG}: {exc}" if not str(exc).startswith(PROG) else str(exc), file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error worth a traceback.
        try:
            sys.stdout = None  # type: ignore[assignment]
        finally:
            return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
