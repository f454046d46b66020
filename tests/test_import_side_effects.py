"""`import cnn_zoo`, its networks, and the Hydra plugin Hydra loads at every start change nothing in the process.

Hydra imports every module under `hydra_plugins/` at each start of any Hydra application, and a notebook imports
one network: neither may get cnn_zoo's CPU settings (environment variables, import hooks, the C allocator's
options). Those belong to the command-line entry points, which log them.
"""

from __future__ import annotations

import json
import subprocess
import sys

# Run in a fresh interpreter: the C library is wrapped first so that any call into it (mallopt) is seen, torch is
# imported first so that its own import-time changes are not counted against cnn_zoo.
PROBE = r"""
import ctypes, importlib, json, os, sys
calls = []
real_cdll = ctypes.CDLL
class Recording(real_cdll):
    def __getattr__(self, name):
        if "malloc" in name or "mallopt" in name:  # the allocator's options (others look up symbols, harmlessly)
            calls.append(name)
        return super().__getattr__(name)
ctypes.CDLL = Recording
if sys.argv[1] == "torch-first":
    import torch, lightning, hydra  # noqa: F401  (their own import-time changes are theirs)
environ, meta_path = dict(os.environ), list(sys.meta_path)
for name in sys.argv[2:]:
    module = importlib.import_module(name)
    if sys.argv[1] == "call-entry-point-tuning":
        module.set_openmp_defaults()
changed = {k: v for k, v in os.environ.items() if environ.get(k) != v}
removed = sorted(set(environ) - set(os.environ))
print(json.dumps({"changed": changed, "removed": removed, "meta_path_added": [repr(f) for f in sys.meta_path
    if f not in meta_path], "libc_calls": calls}))
"""

MODULES = [
    "cnn_zoo",
    "cnn_zoo.models.lenet",
    "cnn_zoo.models.small_cnn",
    "cnn_zoo.models.conv1d",
    "cnn_zoo.training.classifier",
    "cnn_zoo.data.mnist",
    "cnn_zoo.runtime.performance",
]


def probe(*modules: str, mode: str = "torch-first") -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode, *modules], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_cnn_zoo_and_its_networks_leaves_the_process_as_it_was() -> None:
    seen = probe(*MODULES)
    assert seen == {"changed": {}, "removed": [], "meta_path_added": [], "libc_calls": []}


def test_loading_the_hydra_plugins_as_hydra_does_leaves_the_process_as_it_was() -> None:
    import pkgutil

    import hydra_plugins

    plugins = [m.name for m in pkgutil.walk_packages(hydra_plugins.__path__, "hydra_plugins.")]
    assert any("cnn_zoo" in name for name in plugins)
    seen = probe(*plugins)
    assert seen == {"changed": {}, "removed": [], "meta_path_added": [], "libc_calls": []}


def test_the_probe_sees_a_change_when_there_is_one() -> None:
    """The entry points' own choice does install its hook: the probe above is not blind."""
    seen = probe("cnn_zoo.runtime.performance", mode="call-entry-point-tuning")
    assert any("ChooseOpenMPBeforeTorch" in finder for finder in seen["meta_path_added"])
