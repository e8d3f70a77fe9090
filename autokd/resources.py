"""Locating the YAML files shipped beside the package (`search_spaces/`, `experiments/`).

Installed, they are the packages `autokd.search_spaces` and `autokd.experiments` (pyproject's package-dir maps the
top-level folders there); run from a source checkout, they are the top-level folders themselves.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def resource_dir(kind: str) -> Path:
    """The folder of `kind` ("search_spaces" or "experiments")."""
    try:
        found = Path(str(resources.files(f"autokd.{kind}")))
        if found.is_dir():
            return found
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / kind
