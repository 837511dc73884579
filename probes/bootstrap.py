"""A folder that loads the agent into a Python process: for ``infermon run`` (via PYTHONPATH and
``sitecustomize``) and ``infermon attach`` (imported by the injected one-liner).

The folder holds a copy of the agent as ``infermon_agent.py``, so the target needs no infermon
installed, and a ``sitecustomize.py`` that starts it and then runs the ``sitecustomize`` the
process would otherwise have loaded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ENV_ENABLE = "INFERMON_AGENT"

SITECUSTOMIZE = '''\
"""Started by infermon: loads its agent, then the sitecustomize this interpreter would have run."""
import os as _os
import sys as _sys

if _os.environ.get("INFERMON_AGENT") == "1":
    try:
        import infermon_agent as _infermon_agent
        _infermon_agent.start()
    except Exception:  # never stop, or write to, the program it watches: the monitor says "no agent"
        pass

def _chain():
    import importlib.machinery
    import importlib.util
    here = _os.path.dirname(_os.path.abspath(__file__))
    path = [p for p in _sys.path if _os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

try:
    _chain()
except Exception as _error:
    _sys.stderr.write("sitecustomize: %r\\n" % (_error,))
'''


def agent_source() -> Path:
    from infermon.probes import agent

    return Path(agent.__file__)


def make_bootstrap(parent: str | None = None, owner: tuple[int, int] | None = None,
                   attach_interval_s: float | None = None) -> str:
    """A new private folder (0700, random name) with the agent and the sitecustomize; the caller
    removes it. ``owner`` (uid, gid): root attaching to another user's process hands the folder
    to that user, so the target can read it (and remove it once imported) and nobody else can.

    Every file is written through a descriptor of the folder just made (O_EXCL, O_NOFOLLOW), so
    a folder renamed or replaced by a symlink meanwhile (``parent`` may be the target user's own
    temp dir) never redirects a write of ours elsewhere. ``attach_interval_s``: also write
    ``attach.py``, the bootstrap code ``sys.remote_exec`` runs, before the folder is handed over."""
    folder = tempfile.mkdtemp(prefix="infermon-agent-", dir=parent)
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        try:
            os.fchmod(fd, 0o700)
            files = {"infermon_agent.py": agent_source().read_bytes(), "sitecustomize.py": SITECUSTOMIZE.encode()}
            if attach_interval_s is not None:
                from infermon.probes.inject import bootstrap_code

                files["attach.py"] = bootstrap_code(folder, attach_interval_s).encode()
            for name, data in files.items():
                out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
                try:
                    os.write(out, data)
                    if owner is not None and owner[0] != os.geteuid():
                        os.fchown(out, *owner)
                finally:
                    os.close(out)
            if owner is not None and owner[0] != os.geteuid():
                os.fchown(fd, *owner)
        finally:
            os.close(fd)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def agent_environment(folder: str, interval_s: float, base: dict | None = None) -> dict:
    """The environment that loads the agent in a command and every Python process it starts."""
    env = dict(os.environ if base is None else base)
    previous = env.get("PYTHONPATH")
    env["PYTHONPATH"] = folder + (os.pathsep + previous if previous else "")
    env[ENV_ENABLE] = "1"
    env["INFERMON_AGENT_INTERVAL"] = f"{interval_s:g}"
    return env
