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
    except Exception as _error:  # the agent must never stop the program it watches
        _sys.stderr.write("infermon agent not started: %r\\n" % (_error,))

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


def make_bootstrap(parent: str | None = None) -> str:
    """A new private folder (0700) with the agent and the sitecustomize; the caller removes it."""
    folder = tempfile.mkdtemp(prefix="infermon-agent-", dir=parent)
    os.chmod(folder, 0o700)
    shutil.copyfile(agent_source(), os.path.join(folder, "infermon_agent.py"))
    with open(os.path.join(folder, "sitecustomize.py"), "w", encoding="utf-8") as handle:
        handle.write(SITECUSTOMIZE)
    return folder


def agent_environment(folder: str, interval_s: float, base: dict | None = None) -> dict:
    """The environment that loads the agent in a command and every Python process it starts."""
    env = dict(os.environ if base is None else base)
    previous = env.get("PYTHONPATH")
    env["PYTHONPATH"] = folder + (os.pathsep + previous if previous else "")
    env[ENV_ENABLE] = "1"
    env["INFERMON_AGENT_INTERVAL"] = f"{interval_s:g}"
    return env
