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


def build_parser() -> argparse.ArgumentParser:
    from infermon.cli import agent_cmds, calc_cmd, calibrate_cmd, demo_cmd, export_cmd, monitor, replay_cmd

    parser = OneLineParser(
        prog=PROG,
        description="A terminal monitor for LLM inference: tokens/s, bandwidth and FLOP/s against the roofline.",
    )
    parser.add_argument("--version", action=_VersionAction)
    monitor.add_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    calc_cmd.add_parser(sub)
    calibrate_cmd.add_parser(sub)
    agent_cmds.add_parsers(sub)
    replay_cmd.add_parsers(sub)
    demo_cmd.add_parser(sub)
    export_cmd.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 runtime failure, 2 bad input)."""
    try:
        parser = build_parser()
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
