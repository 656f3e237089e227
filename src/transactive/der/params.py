"""Device parameters declared once: :class:`Param` (name, unit, default distribution, bounds,
meaning) drives sampling, validation, the config (:class:`DeviceConfig`), the scenario
parser (:func:`parse_config`) and the docs (:func:`param_table`).

Bounds are written as an interval, ``"(0, 1]"``, ``"[0, inf)"``, ``"[0, inf]"`` (the
last admits ``inf``, e.g. "no export limit"); ``NaN`` is never inside. A drawn array (or a
constant in a scenario) outside its parameter's bounds is an
:class:`~transactive.errors.InvalidInputError` naming the device type and the parameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, make_dataclass, replace
from functools import cache
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from transactive.der.base import Dist, FloatArray, choice, const, lognormal, normal, uniform
from transactive.errors import InvalidInputError, plain


@cache
def _interval(bounds: str) -> tuple[float, float, bool, bool]:
    """``(low, high, low_closed, high_closed)`` of an interval written like ``"(0, 1]"``."""
    s = bounds.strip()
    if len(s) < 5 or s[0] not in "([" or s[-1] not in ")]" or s.count(",") != 1:
        raise ValueError(f"bounds {bounds!r} must look like '(0, 1]' or '[0, inf)'")
    lo_s, hi_s = s[1:-1].split(",")
    lo, hi = float(lo_s), float(hi_s)
    if math.isnan(lo) or math.isnan(hi) or not lo <= hi:
        raise ValueError(f"bounds {bounds!r}: need low ≤ high")
    return lo, hi, s[0] == "[", s[-1] == "]"


def _num(x: float) -> str:
    return f"{plain(x)!r}" if not float(x).is_integer() or abs(x) == math.inf else f"{x:g}"


@dataclass(frozen=True, slots=True)
class Param:
    """One device parameter.

    name: key in configs, scenarios and :class:`DeviceConfig`; unit: its unit (``"1"`` for
    fractions and ratios); default: the distribution it is drawn from unless configured;
    bounds: admissible values as an interval string (see the module docstring); meaning:
    one line for the docs.
    """

    name: str
    unit: str
    default: Dist
    bounds: str = "(-inf, inf)"
    meaning: str = ""

    def __post_init__(self) -> None:
        _interval(self.bounds)  # fail at declaration, not at first use

    def inside(self, x: ArrayLike) -> NDArray[np.bool_]:
        """Elementwise: is ``x`` within the bounds (NaN never is)?"""
        lo, hi, lo_c, hi_c = _interval(self.bounds)
        v = np.asarray(x, dtype=np.float64)
        ok_lo = v >= lo if lo_c else v > lo
        ok_hi = v <= hi if hi_c else v < hi
        out: NDArray[np.bool_] = ok_lo & ok_hi
        return out

    @property
    def rule(self) -> str:
        """The bounds as words for messages: ``"> 0"``, ``"≥ 0"``, ``"in (0, 1]"``."""
        lo, hi, lo_c, hi_c = _interval(self.bounds)
        if math.isinf(lo) and math.isinf(hi):
            return "a finite number" if not (lo_c or hi_c) else f"in {self.bounds}"
        if math.isinf(hi) and not hi_c:
            return f"{'≥' if lo_c else '>'} {_num(lo)}"
        if math.isinf(lo) and not lo_c:
            return f"{'≤' if hi_c else '<'} {_num(hi)}"
        return f"in {self.bounds}"

    def check(self, x: ArrayLike, kind: str) -> None:
        """Raise :class:`InvalidInputError` naming ``kind`` and the parameter unless every
        value of ``x`` is within the bounds."""
        ok = self.inside(x)
        if not np.all(ok):
            bad = np.broadcast_to(np.asarray(x, dtype=np.float64), ok.shape)[~ok].ravel()[0]
            raise InvalidInputError(
                f"{kind} parameter {self.name!r} must be {self.rule}; got e.g. {plain(bad)!r}"
            )


def typical(d: Dist) -> float:
    """A representative value of ``d``: the constant, the uniform midpoint, the (clipped)
    normal mean or log-normal median, the most probable choice."""
    if d.kind == "const":
        return float(d.a)
    if d.kind == "uniform":
        return 0.5 * (d.a + d.b)
    if d.kind in ("normal", "lognormal"):
        return float(np.clip(d.a, d.low, d.high))
    p = d.p or (1.0,) * len(d.values)
    return float(d.values[int(np.argmax(p))])


# --- configs -------------------------------------------------------------------------------


class DeviceConfig(Mapping[str, Dist]):
    """The config of one device type: parameter name → :class:`Dist` for every declared
    :class:`Param` (defaults from the declaration). Each type's config class is generated
    from its ``PARAMS`` (a frozen dataclass, so ``Battery.Config(capacity_kwh=const(10))``
    and ``dataclasses.replace`` work); numbers given for a parameter become constants."""

    KIND: ClassVar[str] = ""
    PARAMS: ClassVar[tuple[Param, ...]] = ()

    def __post_init__(self) -> None:
        for p in self.PARAMS:
            v = getattr(self, p.name)
            if isinstance(v, int | float | np.floating | np.integer) and not isinstance(v, bool):
                object.__setattr__(self, p.name, const(float(v)))
            elif not isinstance(v, Dist):
                raise InvalidInputError(
                    f"{self.KIND} parameter {p.name!r} must be a Dist or a number, "
                    f"not {type(v).__name__}"
                )

    def __getitem__(self, key: str) -> Dist:
        if key not in self.names():
            raise KeyError(key)
        d: Dist = getattr(self, key)
        return d

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.PARAMS)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Parameter names in declaration (= sampling) order."""
        return tuple(p.name for p in cls.PARAMS)

    def with_(self, **dists: Dist | float) -> DeviceConfig:
        """A copy with some parameters replaced (unknown names raise)."""
        unknown = sorted(set(dists) - set(self.names()))
        if unknown:
            raise InvalidInputError(f"{self.KIND}: unknown parameter(s) {', '.join(unknown)}")
        out: DeviceConfig = replace(self, **dists)  # type: ignore[type-var]
        return out

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, FloatArray]:
        """Draw ``n`` values of every parameter in declaration order (so the same seed gives
        the same fleet) and check each array against its bounds."""
        if n < 0:
            raise InvalidInputError(f"{self.KIND}: number of devices must be ≥ 0, not {n}")
        out: dict[str, FloatArray] = {}
        for p in self.PARAMS:
            x = self[p.name].sample(rng, n, f"{self.KIND} parameter {p.name!r}")
            p.check(x, self.KIND)
            out[p.name] = x
        return out


def config_class(kind: str, params: tuple[Param, ...], module: str, qualname: str) -> type:
    """The frozen-dataclass config class of a device type, generated from its ``params``."""
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise ValueError(f"{kind}: duplicate parameter names in {names}")
    cls = make_dataclass(
        qualname.rsplit(".", 1)[-1],
        [(p.name, Dist, field(default=p.default)) for p in params],
        bases=(DeviceConfig,),
        namespace={"KIND": kind, "PARAMS": params, "__doc__": f"Config of {kind} devices."},
        frozen=True,
    )
    cls.__module__ = module
    cls.__qualname__ = qualname
    return cls


# --- scenario tables -----------------------------------------------------------------------

_ARITY = {"uniform": (2, 2), "normal": (2, 4), "lognormal": (2, 4), "const": (1, 1)}


def _finite(x: object, key: str) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise InvalidInputError(f"{key}: {x!r} is not a number")
    v = float(x)
    if not math.isfinite(v):
        raise InvalidInputError(f"{key}: {x!r} is not a finite number")
    return v


def _constant(x: object, p: Param, key: str, kind: str) -> float:
    if isinstance(x, float) and math.isinf(x) and p.inside(x):
        return x  # an admitted infinity, e.g. "no export limit"
    v = _finite(x, key)
    if not p.inside(v):
        raise InvalidInputError(f"{key}: {_num(v)} must be {p.rule}")
    return v


def parse_dist(value: object, p: Param, key: str, kind: str) -> Dist:
    """One scenario value → :class:`Dist`: a number (constant) or a one-key table
    ``{uniform=[lo, hi]}``, ``{normal=[mean, sd]}`` / ``[mean, sd, low, high]`` (clipped),
    ``{lognormal=[median, sigma]}`` / ``[…, low, high]``, ``{const=x}``,
    ``{choice=[[values], [p]]}`` / ``[[values]]`` (equal probabilities). Errors start with
    ``f"{key}: "``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return const(_constant(value, p, key, kind))
    if not (isinstance(value, Mapping) and len(value) == 1):
        raise InvalidInputError(
            f"{key}: expected a number or a one-key table like {{ uniform = [lo, hi] }} "
            f"(uniform, normal, lognormal, const, choice), got {value!r}"
        )
    ((name, args),) = value.items()
    if name == "choice":
        d = _choice(args, p, key, kind)
    elif name in _ARITY:
        lst = list(args) if isinstance(args, list | tuple) else [args]
        lo_n, hi_n = _ARITY[name]
        if not lo_n <= len(lst) <= hi_n:
            raise InvalidInputError(f"{key}: {name} takes {_arity_words(name)}, got {args!r}")
        if name == "const":
            return const(_constant(lst[0], p, key, kind))
        nums = [_finite(a, key) for a in lst[:2]]
        clip = [_clip(a, key) for a in lst[2:]]
        make: dict[str, Callable[..., Dist]] = {
            "uniform": uniform,
            "normal": normal,
            "lognormal": lognormal,
        }
        d = make[name](*nums, *clip)
    else:
        raise InvalidInputError(
            f"{key}: unknown distribution {name!r} (uniform, normal, lognormal, const, choice)"
        )
    d.validate(key)
    return d


def _arity_words(name: str) -> str:
    return {
        "uniform": "[lo, hi]",
        "normal": "[mean, sd], [mean, sd, low] or [mean, sd, low, high]",
        "lognormal": "[median, sigma], [median, sigma, low] or [median, sigma, low, high]",
        "const": "one number",
    }[name]


def _clip(x: object, key: str) -> float:
    if isinstance(x, float) and math.isinf(x):
        return x
    return _finite(x, key)


def _choice(args: object, p: Param, key: str, kind: str) -> Dist:
    if not (isinstance(args, list | tuple) and len(args) in (1, 2)) or not all(
        isinstance(a, list | tuple) for a in args
    ):
        raise InvalidInputError(f"{key}: choice takes [[values], [probabilities]], got {args!r}")
    vals = tuple(_constant(v, p, key, kind) for v in args[0])
    prob = tuple(_finite(v, key) for v in args[1]) if len(args) == 2 else ()
    return choice(vals, prob)


def parse_config(kind: str, table: Mapping[str, object], where: str) -> DeviceConfig:
    """A :class:`DeviceConfig` for device type ``kind`` from a scenario table (parameter →
    number or distribution table, see :func:`parse_dist`); parameters not given keep their
    defaults. Unknown kinds or keys, non-finite numbers, bad distribution arguments and
    constants outside a parameter's bounds raise :class:`InvalidInputError` whose message
    starts with ``f"{where}.{key}: "`` (``f"{where}: "`` for the table itself)."""
    from transactive.der.devices import DEVICE_TYPES

    if kind not in DEVICE_TYPES:
        raise InvalidInputError(
            f"{where}: unknown device type {kind!r} (expected one of {', '.join(DEVICE_TYPES)})"
        )
    if not isinstance(table, Mapping):
        raise InvalidInputError(f"{where}: must be a table of device parameters")
    cls = DEVICE_TYPES[kind]
    by_name = {p.name: p for p in cls.PARAMS}
    dists: dict[str, Dist] = {}
    for key, value in table.items():
        if key not in by_name:
            raise InvalidInputError(
                f"{where}.{key}: unknown key (expected one of {', '.join(sorted(by_name))})"
            )
        dists[key] = parse_dist(value, by_name[key], f"{where}.{key}", kind)
    return cls.config(**dists)


# --- docs ----------------------------------------------------------------------------------


def describe(d: Dist) -> str:
    """A distribution in scenario syntax, e.g. ``uniform = [5, 15]``."""
    if d.kind == "const":
        return _num(d.a)
    if d.kind == "choice":
        vals = ", ".join(_num(v) for v in d.values)
        return f"choice = [[{vals}], [{', '.join(_num(v) for v in d.p)}]]" if d.p else vals
    clip = [x for x in (d.low, d.high)]
    default_clip = (0.0, math.inf) if d.kind == "lognormal" else (-math.inf, math.inf)
    args = [_num(d.a), _num(d.b)] + (
        [_num(c) for c in clip] if tuple(clip) != default_clip and d.kind != "uniform" else []
    )
    return f"{d.kind} = [{', '.join(args)}]"


def param_table(kind: str, params: tuple[Param, ...]) -> str:
    """Markdown table of one type's parameters: name, unit, default, bounds, meaning."""
    rows = [
        f"### `{kind}`",
        "",
        "| name | unit | default | bounds | meaning |",
        "|---|---|---|---|---|",
    ]
    rows += [
        f"| `{p.name}` | {p.unit} | `{describe(p.default)}` | "
        f"{'any finite' if p.bounds == '(-inf, inf)' else f'`{p.bounds}`'} | {p.meaning} |"
        for p in params
    ]
    return "\n".join(rows)
