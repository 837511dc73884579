"""``infermon export --pid PID``: serve infermon's figures as Prometheus metrics."""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import time

from infermon.cli.errors import RuntimeFailure, UserError

DEFAULT_PORT = 9464  # the OpenTelemetry/Prometheus exporter convention; never vLLM's 8000


def add_parser(sub: argparse._SubParsersAction) -> None:
    from infermon.cli.monitor import add_arguments

    export = sub.add_parser("export", help="serve infermon's figures (MBU, MFU, bound, KV headroom…) to Prometheus",
                            description="Sample PID every interval and serve the figures at http://HOST:PORT/metrics.")
    add_arguments(export)
    export.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    export.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback; 0.0.0.0 for all)")
    export.set_defaults(handler=run)


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback one (127.0.0.0/8, ::1); a name that
    does not resolve is not (binding it fails with its own line)."""
    import ipaddress
    import socket

    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        return False
    try:
        return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry, start_http_server

    from infermon.views.exporter import ViewCollector
    from infermon.cli.monitor import open_sampler

    if args.pid is None:
        raise UserError("export: --pid is required")
    if not 0 < args.port < 65536:
        raise UserError(f"export: --port must be 1–65535, not {args.port}")
    if args.port == 8000:
        print("infermon: warning: port 8000 is vLLM's default", file=sys.stderr)
    if not is_loopback(args.host):
        print(f"infermon: warning: serving on {args.host}, not loopback: anyone who can reach this host on port "
              f"{args.port} can read the figures (process names, model, load)", file=sys.stderr)
    sampler, live = open_sampler(args)
    registry = CollectorRegistry(auto_describe=False)
    collector = ViewCollector()
    registry.register(collector)
    try:
        server, _thread = start_http_server(args.port, addr=args.host, registry=registry)
    except OSError as exc:
        sampler.close()
        if exc.errno == errno.EADDRINUSE:
            raise RuntimeFailure(f"export: port {args.port} on {args.host} is already in use (choose --port)") from None
        raise RuntimeFailure(f"export: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    print(f"infermon: serving pid {args.pid}'s figures at http://{args.host}:{args.port}/metrics", file=sys.stderr)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        next_tick = time.monotonic()
        while True:
            snapshot = sampler.tick()
            collector.update(live.update(snapshot))
            if snapshot.tree is not None and not snapshot.tree.alive:
                print(f"infermon: {snapshot.tree.why.get('process', 'the process exited')}; exporter stopped",
                      file=sys.stderr)
                return 0
            next_tick += args.interval
            time.sleep(max(0.0, next_tick - time.monotonic()))
    except KeyboardInterrupt:
        return 0
    finally:
        server.shutdown()
        sampler.close()
