"""One small typed checker for every input kind: settings (CLI flags, presets, experiment files, run.json) and the
JSON files autokd reads (generator, architecture, run, journal events, results, checkpoints' metadata).

A `Field` says what one key may hold; `check_object` validates a whole mapping against a table of fields, rejecting
unknown keys, and raises `UserError` with one line naming the place (file, flag or key) and what is expected.

A setting is declared once, as a dataclass field made by `setting(default, Field(...), help)`: its type and range,
its help text, whether it is a command-line flag, and the value it had before it existed (`neutral`, so that results
recorded by an earlier release still match). `settings_table(cls)` is the table every reader checks against; the
CLI builds its flags from the same metadata (`autokd.cli.add_setting_flags`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from autokd.errors import UserError


@dataclass(frozen=True)
class Field:
    kind: str  # "int", "float", "str", "bool", "list", "dict", "any"
    min: float | None = None  # inclusive bounds for numbers
    max: float | None = None
    above: float | None = None  # exclusive lower bound
    choices: tuple[Any, ...] | None = None
    or_files: tuple[str, ...] | None = None  # with choices: a path ending in one of these suffixes is also allowed
    nullable: bool = False
    required: bool = False
    help: str = ""  # what to do, appended to the error

    def describe(self) -> str:
        if self.choices:
            files = f", or a {'/'.join(self.or_files)} file" if self.or_files else ""
            return "one of " + ", ".join(map(str, self.choices)) + files
        what = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
                "list": "a list", "dict": "a mapping", "any": "a value"}[self.kind]
        bounds = []
        if self.above is not None:
            bounds.append(f"> {self.above:g}")
        if self.min is not None:
            bounds.append(f">= {self.min:g}")
        if self.max is not None:
            bounds.append(f"<= {self.max:g}")
        return what + (" " + " and ".join(bounds) if bounds else "") + (" (or null)" if self.nullable else "")


def _bad(where: str, key: str, value: Any, f: Field) -> UserError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return UserError(f"{where}: {key} must be {f.describe()}, got {shown}" + (f"; {f.help}" if f.help else ""))


def check_value(value: Any, f: Field, key: str, where: str) -> Any:
    """The value, normalised (ints given for floats become floats); raises UserError when it does not fit."""
    if value is None:
        if f.nullable:
            return None
        raise _bad(where, key, value, f)
    if f.kind == "bool":
        if not isinstance(value, bool):
            raise _bad(where, key, value, f)
    elif f.kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(where, key, value, f)
        if isinstance(value, float) and not math.isfinite(value):
            raise _bad(where, key, value, f)
        if f.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise _bad(where, key, value, f)
            value = int(value)
        else:
            value = float(value)
        if ((f.min is not None and value < f.min) or (f.max is not None and value > f.max)
                or (f.above is not None and value <= f.above)):
            raise _bad(where, key, value, f)
    elif f.kind == "str":
        if not isinstance(value, str) or not value or len(value) > 4096 or "\x00" in value:
            raise _bad(where, key, value, f)
    elif f.kind == "list":
        if not isinstance(value, list):
            raise _bad(where, key, value, f)
    elif f.kind == "dict":
        if not isinstance(value, Mapping):
            raise _bad(where, key, value, f)
    if f.choices is not None and value not in f.choices and not (f.or_files and str(value).endswith(f.or_files)):
        raise _bad(where, key, value, f)
    return value


def check_object(obj: Any, fields: Mapping[str, Field], where: str, allow_unknown: bool = False) -> dict[str, Any]:
    """Validate a mapping against `fields`: unknown keys (unless allowed), missing required keys, types, ranges."""
    if not isinstance(obj, Mapping):
        raise UserError(f"{where}: expected a mapping (JSON object), got {type(obj).__name__}")
    if not allow_unknown:
        unknown = sorted(str(k) for k in obj if k not in fields)
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}")
    out: dict[str, Any] = {}
    for key, f in fields.items():
        if key not in obj:
            if f.required:
                raise UserError(f"{where}: missing required key {key!r}")
            continue
        out[key] = check_value(obj[key], f, key, where)
    if allow_unknown:
        out.update({k: v for k, v in obj.items() if k not in fields})
    return out


def check_depth(obj: Any, where: str, limit: int = 32) -> None:
    """Refuse absurdly nested JSON before walking it (a hostile file should not exhaust the stack)."""
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise UserError(f"{where}: nested deeper than {limit} levels; not a file autokd writes")
        if isinstance(item, Mapping):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


_UNSET: Any = object()


def setting(default: Any, check: "Field", help: str, *, flag: bool = True, neutral: Any = _UNSET,
            same_result: bool = False) -> Any:
    """A dataclass field that declares a setting: default, what it may hold, help for its flag. `flag=False` keeps
    it out of the command line (set by presets, experiment files and code only). `neutral`: a setting added after
    results were first recorded, and the value that reproduces the behaviour from before; a record that lacks it
    means that value (see `identity`). `same_result`: how a result is computed, never what (speed, placement), so
    never part of a result's identity."""
    meta = {"check": check, "help": help, "flag": flag, "same_result": same_result}
    if neutral is not _UNSET:
        meta["neutral"] = neutral
    return dataclasses.field(default=default, metadata=meta)


def settings_table(cls: type) -> dict[str, Field]:
    """Name → Field of every setting a dataclass declares (its own and inherited ones), in declaration order."""
    return {f.name: f.metadata["check"] for f in dataclasses.fields(cls) if "check" in f.metadata}


def identity(obj: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The settings of a dataclass instance as a plain dict for matching a stored result, without the settings left
    at their `neutral` value: a result recorded before such a setting existed still matches."""
    out = {}
    for f in dataclasses.fields(obj):
        if f.name in exclude or f.metadata.get("same_result"):
            continue
        value = getattr(obj, f.name)
        if "neutral" in f.metadata and value == f.metadata["neutral"]:
            continue
        out[f.name] = value
    return out
