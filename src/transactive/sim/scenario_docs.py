"""The scenario reference page, rendered from the schema in :mod:`transactive.sim.scenario`.

    .venv/bin/python -m transactive.sim.scenario_docs > docs/scenario.md

Every key: dotted name, type, unit, default, bounds and meaning, as declared once in the
pydantic models (a test fails when the committed page differs from this output).
"""

from __future__ import annotations

import json
import types
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import AwareDatetime, BaseModel
from pydantic.fields import FieldInfo

from transactive.sim.scenario import CONFIG_KINDS, Scenario, _dist_table

REGENERATE = ".venv/bin/python -m transactive.sim.scenario_docs > docs/scenario.md"

_HEADER = f"""\
# Scenario files (reference)

<!-- Generated from src/transactive/sim/scenario.py; do not edit. Regenerate with
     {REGENERATE} -->

A scenario is a TOML file (examples in `examples/`). Every table rejects unknown keys;
numbers must be finite (no `nan`, no `inf`); times need a time zone and are stored in UTC.
Errors list every problem, one per line, as `<file>: '<dotted.key>': <reason>`.

Shorthands: `feeder = "X"` alone means `[[areas]]` with `name = "area"`, `feeder = "X"`
(give one or the other, not both); `paradigms` is the old name of `designs`.
"""


def render() -> str:
    """The Markdown reference page of the scenario schema."""
    parts = [_HEADER]
    for title, prefix, model, field in _tables(Scenario, "", None):
        intro = (model.__doc__ or "").strip()
        if field is not None and _extra(field, "bounds"):
            intro += f" {field.description} ({_extra(field, 'bounds')})"
        parts.append(f"\n## {title}\n\n{intro}\n")
        parts.append("| key | type | unit | default | bounds | meaning |")
        parts.append("|---|---|---|---|---|---|")
        for name, f in model.model_fields.items():
            if _model_of(f.annotation) is not None:
                continue  # a table of its own
            parts.append(
                "| "
                + " | ".join(
                    _cell(x)
                    for x in (
                        f"`{prefix}{name}`",
                        _type(f.annotation),
                        _extra(f, "unit"),
                        _default(f),
                        _bounds(f),
                        f.description or "",
                    )
                )
                + " |"
            )
    parts.append(_device_section())
    return "\n".join(parts) + "\n"


def _tables(
    model: type[BaseModel], prefix: str, field: FieldInfo | None
) -> list[tuple[str, str, type[BaseModel], FieldInfo | None]]:
    """(title, key prefix, model, its field) of ``model`` and every table below it, in
    field order."""
    title = f"`[{prefix.rstrip('.')}]`" if prefix else "Top level"
    if prefix.endswith("[]."):
        title = f"`[[{prefix[:-3]}]]`"
    out = [(title, prefix, model, field)]
    for name, f in model.model_fields.items():
        sub = _model_of(f.annotation)
        if sub is not None:
            many = get_origin(f.annotation) is tuple
            out += _tables(sub, f"{prefix}{name}{'[]' if many else ''}.", f)
    return out


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is tuple:
        args = get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return _model_of(args[0])
    if get_origin(annotation) in (Union, types.UnionType):  # an optional table
        inner = [a for a in get_args(annotation) if a is not type(None)]
        if len(inner) == 1:
            return _model_of(inner[0])
    return None


def _type(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type(args[0])
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_type(a) for a in inner) + (
            " or unset" if len(inner) < len(args) else ""
        )
    if origin is Literal:
        return " or ".join(f'"{a}"' for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type(args[0])}"
        return "[" + ", ".join(_type(a) for a in args) + "]"
    if origin is dict:
        return f"table of {_type(args[1])}" if args[1] is not Any else "table"
    names = {float: "number", int: "integer", str: "string", bool: "boolean", Path: "path"}
    if annotation in names:
        return names[annotation]
    if annotation is AwareDatetime or (
        isinstance(annotation, type) and issubclass(annotation, datetime)
    ):
        return "datetime with time zone"
    return getattr(annotation, "__name__", str(annotation))


def _extra(f: FieldInfo, key: str) -> str:
    extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
    return str(extra.get(key, ""))


def _default(f: FieldInfo) -> str:
    if _extra(f, "default_text"):
        return _extra(f, "default_text")
    if f.is_required():
        return "required"
    d = f.default
    if d is None:
        return "unset"
    if isinstance(d, BaseModel):
        return ""
    return f"`{json.dumps(d, ensure_ascii=False)}`" if d != {} else "`{}`"


def _bounds(f: FieldInfo) -> str:
    text = {
        at.Ge: ("ge", "≥ {}"),
        at.Gt: ("gt", "> {}"),
        at.Le: ("le", "≤ {}"),
        at.Lt: ("lt", "< {}"),
        at.MinLen: ("min_length", "≥ {} items"),
    }
    out = []
    for m in f.metadata:
        for cls, (attr, fmt) in text.items():
            if isinstance(m, cls):
                out.append(fmt.format(getattr(m, attr)))
    written = _extra(f, "bounds")
    if written:
        out = [written]  # the declared text states the whole rule
    return ", ".join(out)


def _cell(x: str) -> str:
    return x.replace("|", "\\|").replace("\n", " ")


def _device_section() -> str:
    """Device kinds and their parameters with today's default distributions."""
    from dataclasses import fields

    from transactive.der.fleet import CONFIGS

    lines = [
        "\n## `[der.config.<kind>]`\n",
        "Device parameters per kind: a number (a constant) or a one-key table giving a "
        "distribution the fleet is drawn from. The defaults (units in the device models):\n",
        "| kind | parameter | default |",
        "|---|---|---|",
    ]
    for kind in CONFIG_KINDS:
        default = CONFIGS[kind]()
        for f in fields(default):
            v = json.dumps(_dist_table(getattr(default, f.name))).replace("Infinity", "inf")
            lines.append(f"| `{kind}` | `{f.name}` | `{_cell(v)}` |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
