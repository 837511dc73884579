"""Which TCP ports are listened on, by socket inode: the sockets in state LISTEN of a network namespace.

Asked of the kernel with a ``sock_diag`` netlink dump filtered to LISTEN (what ``ss -l`` does): the
kernel then walks only its listening sockets. Reading ``/proc/PID/net/tcp`` and ``tcp6`` instead
makes it format every socket of the namespace, and costs milliseconds per read however few rows
there are (3 ms for a one-row table on a 2-vCPU VM, 6 ms for both): the netlink answer takes tens of
microseconds. The ``/proc`` tables remain the way into another network namespace (a process in a
container) and wherever netlink sockets are refused.

Standard library only; nothing here writes to a socket other than the kernel's own netlink one.
"""

from __future__ import annotations

import os
import re
import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_LISTEN = 10
_HEADER = struct.Struct("=IHHII")               # nlmsghdr: len, type, flags, seq, pid
_REQUEST = struct.Struct("=BBBxI48x")           # inet_diag_req_v2: family, protocol, ext, states, sockid
_SPORT = struct.Struct(">H")                    # inet_diag_msg: the source port, big-endian, at offset 4
_INODE = struct.Struct("=I")                    # inet_diag_msg: the socket inode, at offset 68
_MESSAGE_MIN = 72
# Bounds on what one dump may take: listening sockets are few; a host with more is not read further.
_MAX_BYTES = 16 * 1024 * 1024
_TIMEOUT_S = 1.0

# A LISTEN row of /proc/PID/net/tcp{,6}: "sl: local rem st tx:rx tr:when retrnsmt uid timeout inode".
_LISTEN_ROW = re.compile(
    rb"^ *\d+: [0-9A-Fa-f]+:([0-9A-Fa-f]{4}) [0-9A-Fa-f]+:[0-9A-Fa-f]{4} 0A +\S+ +\S+ +\S+ +\d+ +\d+ +(\d+)",
    re.MULTILINE)
_TABLE_MAX_BYTES = 64 * 1024 * 1024


def _dump(family: int) -> dict[int, int]:
    """inode → port of the TCP sockets of ``family`` in state LISTEN in our own network namespace."""
    found: dict[int, int] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(_TIMEOUT_S)
        body = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 1 << TCP_LISTEN)
        sock.sendall(_HEADER.pack(_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
                     + body)
        received = 0
        while received < _MAX_BYTES:
            data = sock.recv(65536)
            if not data:
                raise OSError("netlink closed before the end of the dump")
            received += len(data)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, _flags, _seq, _pid = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    raise OSError("malformed netlink message")
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    raise OSError("the kernel refused the socket dump")
                start = offset + _HEADER.size
                if kind == SOCK_DIAG_BY_FAMILY and length - _HEADER.size >= _MESSAGE_MIN:
                    (port,) = _SPORT.unpack_from(data, start + 4)
                    (inode,) = _INODE.unpack_from(data, start + 68)
                    found[inode] = port
                offset += (length + 3) & ~3  # messages are 4-byte aligned
        raise OSError("the socket dump did not end")


def _same_namespace(pid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return False


def _from_tables(pid: int) -> dict[int, int] | None:
    """inode → port from the LISTEN rows of ``/proc/PID/net/tcp{,6}`` (None: the process has gone)."""
    found: dict[int, int] = {}
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}", "rb") as handle:
                data = handle.read(_TABLE_MAX_BYTES)
        except FileNotFoundError:
            if table == "tcp6":
                continue  # a kernel without IPv6
            return None
        for port, inode in _LISTEN_ROW.findall(data):
            found[int(inode)] = int(port, 16)
    return found


class Listeners:
    """The listening TCP sockets seen from one process's network namespace, read once and reused
    for every process of a tree that shares it (``ports_of``)."""

    def __init__(self) -> None:
        self._own: dict[int, int] | None = None
        self._netlink_ok = True

    def sockets(self, pid: int) -> dict[int, int] | None:
        """inode → port for ``pid``'s namespace (None: it has gone, or its namespace is unreadable)."""
        if self._netlink_ok and _same_namespace(pid):
            if self._own is None:
                try:
                    own = _dump(socket.AF_INET)
                    if socket.has_ipv6:
                        own.update(_dump(socket.AF_INET6))
                    self._own = own
                except (OSError, struct.error, AttributeError):
                    self._netlink_ok = False  # refused here (a sandbox): the tables from now on
            if self._own is not None:
                return self._own
        try:
            return _from_tables(pid)
        except OSError:
            return None

    def ports_of(self, pid: int) -> tuple[int, ...]:
        """The TCP ports ``pid`` listens on: listening sockets that are among its file descriptors.
        Empty when it listens on none, has gone, or its descriptors are another user's."""
        listening = self.sockets(pid)
        if not listening:
            return ()
        ports = set()
        folder = f"/proc/{pid}/fd"
        try:
            descriptors = os.listdir(folder)
        except OSError:
            return ()
        for fd in descriptors:
            try:
                link = os.readlink(f"{folder}/{fd}")
            except OSError:
                continue  # closed meanwhile
            if link.startswith("socket:[") and link.endswith("]") and link[8:-1].isdigit():
                port = listening.get(int(link[8:-1]))
                if port is not None:
                    ports.add(port)
        return tuple(sorted(ports))
