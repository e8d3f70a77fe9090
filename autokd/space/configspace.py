"""Search-space files (`search_spaces/*.yaml`) ↔ ConfigSpace `ConfigurationSpace`, and θ validation."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import ConfigSpace as CS
import yaml

from autokd.errors import UserError
from autokd.recipe import DEFAULT_KD as KD_DEFAULTS
from autokd.resources import builtin_spaces, resource_dir

THETA_KEYS = ("G1_nodes", "G1_K", "G1_P", "G2_nodes", "G2_P", "G3_nodes", "G3_K", "G3_P")
# autokd's extensions of θ, each optional: a space that does not name one (the paper's) gets NAGO's behaviour.
#   head_channels: width of the head's 1×1 conv (NAGO: 1280, which at a 100k limit is 40% of the parameters)
OPTIONAL_THETA_KEYS = ("head_channels",)
KD_KEYS = ("temperature", "alpha")


def kd_loss_names() -> tuple[str, ...]:
    """The KD losses a space may search (`kd: loss: {type: categorical, ...}`): the recipe's choices."""
    from dataclasses import fields

    from autokd.recipe import Recipe

    return next(f.metadata["check"].choices for f in fields(Recipe) if f.name == "kd_loss")


def kd_loss_params() -> dict[str, str]:
    """Each loss parameter the recipe declares (named `<loss>_<what>`) → its loss: searchable, active only while
    the space's `loss` takes that value."""
    from dataclasses import fields

    from autokd.recipe import Recipe

    names = kd_loss_names()
    return {f.name: f.name.split("_", 1)[0] for f in fields(Recipe) if f.name.split("_", 1)[0] in names}
# The built-in spaces: every search_spaces/*.yaml (the paper's NAGO space, autokd's small-limit space, each also
# without KD, and the small space with the KD loss searched). A user's own file is given by path.
BUILTIN_SPACES = builtin_spaces()
NO_KD_SECTION = {"alpha": {"type": "constant", "value": 0.0}}  # a space's `kd:` when it trains without a teacher
DEFAULT_KD = asdict(KD_DEFAULTS)  # τ = 4, α = 0.9: the RepDistiller/CRD recipe (AutoKD, Eyono et al. 2021)


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # "int", "float", "constant" or "categorical"
    lower: float = 0.0
    upper: float = 0.0
    value: Any = 0.0
    choices: tuple[str, ...] = ()  # categorical
    when: str | None = None  # a KD loss's parameter: active only while `loss` is this value

    def check(self, value: Any, where: str) -> Any:
        if self.type == "categorical" or (self.type == "constant" and isinstance(self.value, str)):
            allowed = self.choices or (self.value,)
            if value not in allowed:
                raise UserError(f"{where}: {self.name} must be one of {', '.join(allowed)}, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: {self.name} must be a number, got {value!r}")
        if not math.isfinite(value):  # JSON's Infinity, NaN, or 1e400 (which parses to inf)
            raise UserError(f"{where}: {self.name} must be a finite number, got {value!r}")
        if self.type == "constant":
            if value != self.value:
                raise UserError(f"{where}: {self.name} is fixed at {self.value} in this space, got {value}")
            return value
        if self.type == "int" and int(value) != value:
            raise UserError(f"{where}: {self.name} must be an integer, got {value}")
        if not self.lower <= value <= self.upper:
            raise UserError(f"{where}: {self.name}={value} is outside [{self.lower}, {self.upper}]")
        return int(value) if self.type == "int" else float(value)


@dataclass(frozen=True)
class SearchSpace:
    name: str
    generator: tuple[Param, ...]
    kd: tuple[Param, ...]

    def params(self) -> tuple[Param, ...]:
        return self.generator + self.kd

    def without_kd(self) -> "SearchSpace":
        """The same generator dimensions trained without distillation (α fixed at 0, τ unused), as the built-in
        *-nokd spaces are."""
        return SearchSpace(f"{self.name}-nokd", self.generator,
                           tuple(_param(k, v, "no KD") for k, v in NO_KD_SECTION.items()))

    def with_max_nodes(self, max_nodes: int | None) -> "SearchSpace":
        """The same space with every G*_nodes upper bound capped (the smoke preset keeps CPU trials small)."""
        if max_nodes is None:
            return self
        gen = []
        for p in self.generator:
            if p.name.endswith("_nodes"):
                if max_nodes < p.lower:
                    raise UserError(f"max_nodes {max_nodes} is below {p.name}'s lower bound {p.lower:g}")
                p = Param(p.name, p.type, p.lower, min(p.upper, float(max_nodes)))
            gen.append(p)
        return SearchSpace(self.name, tuple(gen), self.kd)

    def dead_dimensions(self) -> dict[str, float]:
        """Generator dimensions that cannot change any architecture of this space, each with the value it is fixed
        at (its lower bound). networkx's Watts–Strogatz graph takes K // 2 neighbours a side, K clamped to nodes − 1
        (graphs.clamp_k): a K range whose every value gives the same neighbours at every node count in range is
        dead; so is a rewiring P when every such ring lattice is already complete (nothing to rewire to), and an
        Erdős–Rényi P when a graph has at most one node. BOHB's model then spends no points on them."""
        from autokd.space.graphs import clamp_k

        known = {p.name: p for p in self.generator}

        def values(name: str) -> list[int]:
            p = known[name]
            return [int(p.value)] if p.type == "constant" else list(range(int(p.lower), int(p.upper) + 1))

        dead: dict[str, float] = {}
        for level, kind in (("G1", "ws"), ("G2", "er"), ("G3", "ws")):
            nodes = values(f"{level}_nodes")
            if kind == "er":
                if max(nodes) <= 1 and known[f"{level}_P"].type != "constant":
                    dead[f"{level}_P"] = known[f"{level}_P"].lower
                continue
            ks = values(f"{level}_K")
            if known[f"{level}_K"].type != "constant" and all(
                    len({clamp_k(n, k) // 2 for k in ks}) == 1 for n in nodes):
                dead[f"{level}_K"] = known[f"{level}_K"].lower
            if known[f"{level}_P"].type != "constant" and all(
                    n <= 2 or 2 * (clamp_k(n, k) // 2) >= n - 1 for n in nodes for k in ks):
                dead[f"{level}_P"] = known[f"{level}_P"].lower
        return dead

    def fixing(self, fixed: Mapping[str, float]) -> "SearchSpace":
        """The same space with the named generator dimensions held constant at the given values."""
        gen = tuple(Param(p.name, "constant", value=float(fixed[p.name])) if p.name in fixed else p
                    for p in self.generator)
        return SearchSpace(self.name, gen, self.kd)

    def to_configspace(self, seed: int | None = None) -> CS.ConfigurationSpace:
        cs = CS.ConfigurationSpace(name=self.name, seed=seed)
        for p in self.params():
            if p.type == "int" and p.lower == p.upper:
                cs.add(CS.Constant(p.name, int(p.lower)))
            elif p.type == "int":
                cs.add(CS.UniformIntegerHyperparameter(p.name, int(p.lower), int(p.upper)))
            elif p.type == "float":
                cs.add(CS.UniformFloatHyperparameter(p.name, p.lower, p.upper))
            elif p.type == "categorical":
                cs.add(CS.CategoricalHyperparameter(p.name, list(p.choices)))
            else:
                cs.add(CS.Constant(p.name, p.value))
        for p in self.kd:
            if p.when is not None and isinstance(cs["loss"], CS.CategoricalHyperparameter):
                cs.add(CS.EqualsCondition(cs[p.name], cs["loss"], p.when))
        return cs

    def searched_kd_loss(self) -> bool:
        return any(p.name == "loss" for p in self.kd)

    def loss_choices(self) -> tuple[str, ...]:
        """The KD losses the space searches (empty when it does not)."""
        return next((p.choices for p in self.kd if p.name == "loss"), ())

    def check_theta(self, theta: Mapping[str, Any], where: str = "generator") -> dict[str, int | float]:
        """Validated θ with exactly the generator keys; unknown, missing or out-of-range keys are bad input."""
        if not isinstance(theta, Mapping):
            raise UserError(f"{where} must be an object with keys {', '.join(THETA_KEYS)}")
        known = {p.name: p for p in self.generator}
        unknown = sorted(set(theta) - set(known))
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} for space {self.name}; expected "
                            f"{', '.join(known)}")
        theta = dict(theta)
        for key in OPTIONAL_THETA_KEYS:  # a fixed extension may be left out of a generator file
            if key in known and key not in theta and known[key].type == "constant":
                theta[key] = known[key].value
        missing = [k for k in known if k not in theta]
        if missing:
            raise UserError(f"{where}: missing key(s) {', '.join(missing)}")
        out = {k: known[k].check(theta[k], where) for k in known}
        return {k: int(v) if k in OPTIONAL_THETA_KEYS else v for k, v in out.items()}

    def check_kd(self, kd: Mapping[str, Any] | None, where: str = "kd") -> dict[str, Any]:
        """τ and α with defaults (τ=4, α=0.9, or the space's constant), and, where the space searches the KD loss,
        `loss` and the parameters of that loss; unknown or out-of-range keys are bad input."""
        if kd is None:
            kd = {}
        if not isinstance(kd, Mapping):
            raise UserError(f"{where} must be an object with keys temperature, alpha")
        loss_keys = ("loss", *kd_loss_params()) if self.searched_kd_loss() else ()
        unknown = sorted(set(kd) - set(KD_KEYS) - set(loss_keys))
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; expected temperature, alpha"
                            + (", loss and its parameters" if loss_keys else ""))
        known = {p.name: p for p in self.kd}
        out: dict[str, float] = {}
        for key in KD_KEYS:
            p = known.get(key)
            if key in kd:
                rng = p or Param(key, "float", 1.0 if key == "temperature" else 0.0,
                                 10.0 if key == "temperature" else 1.0)
                out[key] = float(rng.check(kd[key], where))
            else:
                out[key] = float(p.value) if p is not None and p.type == "constant" else DEFAULT_KD[key]
        if loss_keys and "loss" in kd:
            known_loss = {p.name: p for p in self.kd}
            out["loss"] = known_loss["loss"].check(kd["loss"], where)
            for name, owner in kd_loss_params().items():
                if name in kd:
                    if owner != out["loss"]:
                        raise UserError(f"{where}: {name} belongs to the {owner} loss, not {out['loss']}")
                    rng = known_loss.get(name) or Param(name, "float", 0.0, 100.0)
                    out[name] = float(rng.check(kd[name], where))
        return out


def _param(name: str, obj: Any, source: str) -> Param:
    if not isinstance(obj, dict) or obj.get("type") not in ("int", "float", "constant", "categorical"):
        raise UserError(f"search space {source}: {name} needs type int, float, constant or categorical")
    when = obj.get("when")
    if obj["type"] == "categorical":
        choices = obj.get("choices")
        if name != "loss" or not isinstance(choices, list) or not choices or \
                not set(choices) <= set(kd_loss_names()) or len(set(choices)) != len(choices):
            raise UserError(f"search space {source}: only kd.loss may be categorical, with choices among "
                            f"{', '.join(kd_loss_names())} (each once)")
        return Param(name, "categorical", choices=tuple(choices))
    try:
        if obj["type"] == "constant":
            return Param(name, "constant", value=float(obj["value"]), when=when)
        lo, hi = float(obj["lower"]), float(obj["upper"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"search space {source}: {name} needs numeric lower/upper (or value)") from None
    if lo >= hi:
        raise UserError(f"search space {source}: {name} has lower {lo} >= upper {hi}")
    return Param(name, obj["type"], lo, hi, when=when)


def space_definition(name_or_path: str) -> dict[str, Any]:
    """The YAML mapping that defines a space (a built-in name or a file's path), parsed but not yet checked."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"search space file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    else:
        res = resource_dir("search_spaces") / f"{name_or_path}.yaml"
        if not res.is_file():
            raise UserError(f"unknown search space {name_or_path!r}; built-in: {', '.join(BUILTIN_SPACES)}, or a "
                            ".yaml path")
        text = res.read_text()
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"search space {name_or_path}: invalid YAML ({exc})") from None
    if not isinstance(obj, dict):
        raise UserError(f"search space {name_or_path}: needs a mapping with a 'generator' mapping")
    return {"name": str(obj.get("name", path.stem)), **obj}


def load_space(name_or_path: str = "nago") -> SearchSpace:
    """Load a built-in space by name (BUILTIN_SPACES) or a YAML file by path."""
    return space_from_definition(space_definition(name_or_path), name_or_path)


def resolve_space(name: str, definition: Mapping[str, Any] | None = None) -> SearchSpace:
    """The space a run or a generator file names: from the definition it carries (a user's own space, copied in
    when the search started, so the run does not depend on the file staying where it was), else built-in by name."""
    if definition is not None:
        return space_from_definition(definition, f"{name} (as recorded)")
    if name not in BUILTIN_SPACES:
        raise UserError(f"search space {name!r} is not built-in ({', '.join(BUILTIN_SPACES)}) and its definition "
                        "is not recorded beside it")
    return load_space(name)


def space_from_definition(obj: Mapping[str, Any], source: str) -> SearchSpace:
    """A space from its mapping (`generator:` θ's dimensions, optional `kd:`), every dimension checked."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get("generator"), dict):
        raise UserError(f"search space {source}: needs a 'generator' mapping")
    names = set(obj["generator"])
    if not set(THETA_KEYS) <= names or not names - set(THETA_KEYS) <= set(OPTIONAL_THETA_KEYS):
        raise UserError(f"search space {source}: generator keys must be {', '.join(THETA_KEYS)}, then "
                        f"optionally {', '.join(OPTIONAL_THETA_KEYS)}")
    # θ's order, whatever the mapping's (a definition recorded in JSON has its keys sorted)
    gen = tuple(_param(k, obj["generator"][k], source) for k in (*THETA_KEYS, *OPTIONAL_THETA_KEYS) if k in names)
    kd = tuple(_param(k, v, source) for k, v in (obj.get("kd") or {}).items())
    _check_kd_section(kd, source)
    return SearchSpace(str(obj.get("name", Path(source).stem)), gen, kd)


def _check_kd_section(kd: tuple[Param, ...], source: str) -> None:
    """temperature, alpha, and optionally a categorical `loss` with parameters of its losses (`when: LOSS`)."""
    names = {p.name: p for p in kd}
    loss = names.get("loss")
    owners = kd_loss_params()
    for p in kd:
        if p.name in KD_KEYS or p.name == "loss":
            continue
        if p.name not in owners:
            raise UserError(f"search space {source}: kd keys must be among temperature, alpha, loss and the losses' "
                            f"parameters ({', '.join(owners)}); got {p.name}")
        if loss is None or p.when != owners[p.name] or p.when not in loss.choices:
            raise UserError(f"search space {source}: kd.{p.name} needs `when: {owners[p.name]}` and a kd.loss "
                            f"categorical that offers {owners[p.name]}")


def kd_of(values: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration's searched KD loss and that loss's parameters ({} where the space does not search it)."""
    if "loss" not in values:
        return {}
    return {"kd_loss": values["loss"],
            "kd_params": {k: float(values[k]) for k, owner in kd_loss_params().items()
                          if owner == values["loss"] and k in values}}


def theta_of(values: Mapping[str, Any]) -> dict[str, Any]:
    """The generator keys of a configuration (θ's 8 keys and whichever optional extensions it holds)."""
    return {k: values[k] for k in THETA_KEYS + OPTIONAL_THETA_KEYS if k in values}


def config_to_plain(config: Mapping[str, Any]) -> dict[str, int | float]:
    """ConfigSpace / hpbandster values may be numpy scalars: convert to JSON builtins."""
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in dict(config).items()}
