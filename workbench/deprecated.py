"""Old module paths of the flat layout (``workbench.loading``, ``workbench.bench``, ...) kept for
one release: importing one warns (``DeprecationWarning``) and gives a module whose names come from
the new modules listed here. Remove in 0.3."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

# old module -> the new modules its names now live in, searched in order
MOVED: dict[str, tuple[str, ...]] = {
    "units": ("common",),
    "catalog": ("store.catalog",),
    "fetch": ("store.sources", "common"),
    "convert": ("store.convert",),
    "custom": ("store.custom",),
    "loading": ("runtime.loading", "runtime.devices", "common"),
    "generation": ("runtime.generation", "runtime.sampling"),
    "backends": ("runtime.backends", "runtime.backends.torch_eager"),
    "ort_backend": ("runtime.backends.ort", "runtime.backends", "common"),
    "onnx_export": ("onnx.cache", "onnx.spec", "onnx.driver"),
    "parity": ("latency.parity",),
    "bench": ("latency.harness", "latency.results", "latency.stats", "latency.environment", "latency.speeds"),
    "attention_math": ("attention.scores", "runtime.sampling"),
    "ablation": ("attention.ablation",),
    "attention_views": ("views.attention",),
    "bertviz_offline": ("views.bertviz",),
    "generation_views": ("views.generation",),
    "latency_plots": ("views.latency",),
    "attention_cli": ("cli.attention",),
    "onnx_cli": ("cli.onnx",),
}


class _Redirect(types.ModuleType):
    def __init__(self, name: str, targets: tuple[str, ...]):
        super().__init__(name, f"Deprecated: moved to {', '.join('workbench.' + t for t in targets)}.")
        self._targets = targets

    def __getattr__(self, attr: str):
        for target in self._targets:
            module = importlib.import_module(f"workbench.{target}")
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"{self.__name__} has no attribute {attr!r}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        package, _, old = fullname.rpartition(".")
        if package == "workbench" and old in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        old = spec.name.rpartition(".")[2]
        new = ", ".join(f"workbench.{t}" for t in MOVED[old])
        warnings.warn(f"{spec.name} is deprecated: import from {new}.", DeprecationWarning, stacklevel=3)
        return _Redirect(spec.name, MOVED[old])

    def exec_module(self, module):
        pass


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
