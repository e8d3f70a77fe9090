"""The generator file (`autokd.generator/1`): θ, KD settings, parameter limit and provenance (docs/file-formats.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autokd.errors import UserError
from autokd.fsutil import read_json
from autokd.validate import check_depth
from autokd.space.configspace import BUILTIN_SPACES, resolve_space
from autokd.space.generator import DEFAULT_PARAM_LIMIT

GENERATOR_FORMAT = "autokd.generator/1"
TOP_KEYS = {"format", "space", "space_definition", "generator", "kd", "param_limit", "source", "merge_width"}


@dataclass(frozen=True)
class GeneratorFile:
    generator: dict[str, int | float]
    kd: dict[str, float]
    space: str = "nago"
    param_limit: int | None = None  # None: the dataset's default
    source: dict[str, Any] = field(default_factory=dict)
    merge_width: str = "cell"  # top-level merge rule of the architectures (autokd.space.plan)
    space_definition: dict[str, Any] | None = None  # a user's own space (not built-in), as the search recorded it

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": GENERATOR_FORMAT, "space": self.space, "generator": self.generator,
                               "kd": self.kd}
        if self.space_definition is not None:
            out["space_definition"] = self.space_definition
        if self.param_limit is not None:
            out["param_limit"] = self.param_limit
        if self.source:
            out["source"] = self.source
        if self.merge_width != "cell":
            out["merge_width"] = self.merge_width
        return out


def generator_from_json(obj: Any, where: str = "generator file") -> GeneratorFile:
    """Validate a generator object: only `generator` is required; unknown keys or out-of-range values are errors."""
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object with a 'generator' key")
    unknown = sorted(set(obj) - TOP_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(TOP_KEYS))}")
    if "format" in obj and obj["format"] != GENERATOR_FORMAT:
        raise UserError(f"{where}: format {obj['format']!r} is not {GENERATOR_FORMAT!r}")
    if "generator" not in obj:
        raise UserError(f"{where}: missing the required 'generator' object")
    space_name = obj.get("space", "nago")
    definition = obj.get("space_definition")
    if definition is None and space_name not in BUILTIN_SPACES:
        raise UserError(f"{where}: unknown space {space_name!r}; expected one of {', '.join(BUILTIN_SPACES)} (or "
                        "the space's own definition in space_definition, as a search of a space file writes it)")
    if definition is not None and not isinstance(definition, dict):
        raise UserError(f"{where}: space_definition must be a mapping (a search space file's content)")
    space = resolve_space(space_name, definition)
    theta = space.check_theta(obj["generator"], f"{where}: generator")
    kd = space.check_kd(obj.get("kd"), f"{where}: kd")
    limit = obj.get("param_limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1000):
        raise UserError(f"{where}: param_limit must be an integer >= 1000, got {limit!r}")
    source = obj.get("source") or {}
    if not isinstance(source, dict):
        raise UserError(f"{where}: source must be an object")
    seed = source.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31):
        raise UserError(f"{where}: source.seed must be an architecture seed (an integer >= 0), got {seed!r}")
    for key in ("dataset", "teacher", "data_dir", "teacher_weights"):
        if source.get(key) is not None and not isinstance(source[key], str):
            raise UserError(f"{where}: source.{key} must be a string, got {source[key]!r}")
    merge = obj.get("merge_width", "cell")
    if merge not in ("cell", "predecessor"):
        raise UserError(f"{where}: merge_width must be cell or predecessor, got {merge!r}")
    return GeneratorFile(theta, kd, space_name, limit, source, merge, definition)


def load_generator(path: str | Path) -> GeneratorFile:
    p = Path(path)
    obj = read_json(p, "generator file")
    check_depth(obj, f"generator file {p}")
    return generator_from_json(obj, f"generator file {p}")


def default_param_limit(input_shape: tuple[int, int, int]) -> int:
    """4.0M for small images, 6.0M for large ones (AutoKD, Eyono et al. 2021)."""
    return DEFAULT_PARAM_LIMIT if min(input_shape[1:]) <= 64 else 6_000_000
