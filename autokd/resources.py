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


def builtin_spaces() -> tuple[str, ...]:
    """The built-in search spaces: every YAML file in search_spaces/ is one (adding a space is adding its file). A
    name ending in -nokd is its space without the KD dimensions (what a search without a teacher uses)."""
    return tuple(sorted(p.stem for p in resource_dir("search_spaces").glob("*.yaml")))


SPACE_FILE_SUFFIXES = (".yaml", ".yml")  # a user's own space is given by its file's path
