"""autokd: knowledge-distillation-aware neural architecture search (AutoKD) over NAGO student generators.

The public API (docs/usage.md, "As a library"); everything else is internal and may change:

    search, resume, retrain, load_run, Run        run a search or a retrain, read a run directory
    SearchSettings, RetrainSettings, Recipe       every setting, declared once (type, range, help, default)
    TrialResult, Status                           one evaluation of a search, frozen
    GeneratorFile, load_generator                 a generator file (best.json): θ, τ/α, its source
    ArchSpec, load_arch, sample_architecture      an architecture: sampled from θ, or read from its JSON
    build_student, load_student                   the PyTorch module of an architecture; a trained student
    UserError                                     bad input: its message is one line that says what to do

Names are imported on first use, so `import autokd` stays light (torch loads with the first call that needs it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from autokd._version import __version__

_EXPORTS = {
    "search": "autokd.api", "resume": "autokd.api", "retrain": "autokd.api", "load_run": "autokd.api",
    "Run": "autokd.api", "load_student": "autokd.api",
    "SearchSettings": "autokd.config", "RetrainSettings": "autokd.config", "Recipe": "autokd.recipe",
    "TrialResult": "autokd.hpo.trial", "Status": "autokd.hpo.trial",
    "GeneratorFile": "autokd.space.genfile", "load_generator": "autokd.space.genfile",
    "ArchSpec": "autokd.space.spec", "load_arch": "autokd.space.spec",
    "sample_architecture": "autokd.space.generator", "build_student": "autokd.nn.student",
    "UserError": "autokd.errors",
}
__all__ = ["__version__", "search", "resume", "retrain", "load_run", "Run", "load_student", "SearchSettings",
           "RetrainSettings", "Recipe", "TrialResult", "Status", "GeneratorFile", "load_generator", "ArchSpec",
           "load_arch", "sample_architecture", "build_student", "UserError"]
assert set(__all__) == {"__version__", *_EXPORTS}

if TYPE_CHECKING:
    from autokd.api import Run, load_run, load_student, resume, retrain, search
    from autokd.config import RetrainSettings, SearchSettings
    from autokd.errors import UserError
    from autokd.nn.student import build_student
    from autokd.recipe import Recipe
    from autokd.hpo.trial import Status, TrialResult
    from autokd.space.generator import sample_architecture
    from autokd.space.genfile import GeneratorFile, load_generator
    from autokd.space.spec import ArchSpec, load_arch


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'autokd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
