"""Transforms: what a mapping file's ``transforms`` steps do to a vendor value before the contract
sees it (units, scales, date formats, list splitting, yes/no flags).

A step is a one-key mapping (``{scale: 0.5}``), or ``datetime_format`` with its ``timezone``.
Each compiles once into a function; a value a step cannot read raises ``TransformError`` naming
the step, which the mapper turns into an ``invalid_value`` rejection (the record is quarantined,
not dropped and not guessed at).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Each unit as a multiple of its dimension's base unit (square feet, feet): exact NIST factors.
_AREA_SQFT = {
    "square_feet": Decimal(1),
    "square_meters": Decimal("10.76391041670972"),  # 1 / 0.09290304
    "acres": Decimal(43560),
    "hectares": Decimal("107639.1041670972"),
}
_LENGTH_FT = {"feet": Decimal(1), "meters": Decimal("3.280839895013123")}  # 1 / 0.3048
UNITS = {**{u: ("area", f) for u, f in _AREA_SQFT.items()},
         **{u: ("length", f) for u, f in _LENGTH_FT.items()}}  # fmt: skip
KINDS = ("unit", "scale", "date_format", "datetime_format", "split", "boolean")

Step = Callable[[Any], Any]


class TransformError(ValueError):
    """A value a step cannot read; ``str()`` names the step and the value (cut short)."""


def compile_steps(steps: list[dict[str, Any]]) -> tuple[list[tuple[str, Step]], list[str]]:
    """Each step as (its label, its function), and what is wrong with the ones that are not
    steps (``[i]: ...``, for the caller to prefix with the file and key)."""
    out: list[tuple[str, Step]] = []
    problems: list[str] = []
    for i, step in enumerate(steps):
        try:
            out.append(_compile(step))
        except ValueError as exc:
            problems.append(f"[{i}]: {exc}")
    return out, problems


def _compile(step: dict[str, Any]) -> tuple[str, Step]:
    kinds = [k for k in step if k in KINDS]
    extra = set(step) - set(kinds) - ({"timezone", "places"} if kinds else set())
    if len(kinds) != 1 or extra:
        raise ValueError(
            f"a step is one of {', '.join(KINDS)}; got {', '.join(map(str, step)) or 'nothing'}"
        )
    kind = kinds[0]
    arg = step[kind]
    if kind != "datetime_format" and "timezone" in step:
        raise ValueError("'timezone' goes with datetime_format only")
    if kind != "unit" and "places" in step:
        raise ValueError("'places' goes with unit only")
    match kind:
        case "unit":
            return _unit(arg, step.get("places", 2))
        case "scale":
            return _scale(arg)
        case "date_format":
            return _date(arg)
        case "datetime_format":
            return _datetime(arg, step.get("timezone"))
        case "split":
            return _split(arg)
        case _:
            return _boolean(arg)


def _number(value: Any, label: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise TransformError(f"{label} cannot read {_shown(value)}: not a number")
    try:
        number = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation:
        raise TransformError(f"{label} cannot read {_shown(value)}: not a number") from None
    if not number.is_finite():
        raise TransformError(f"{label} cannot read {_shown(value)}: not a finite number")
    return number


def _arithmetic(value: Any, label: str, work: Callable[[Decimal], Decimal]) -> Decimal:
    """``work`` on the value read as a number; a result past what Decimal holds (an exponent
    overflow, or more digits than ``quantize`` may give) is a value the step cannot read."""
    number = _number(value, label)
    try:
        return work(number)
    except ArithmeticError:  # decimal.InvalidOperation, Overflow
        raise TransformError(f"{label} cannot read {_shown(value)}: out of range") from None


def _unit(arg: Any, places: Any) -> tuple[str, Step]:
    if not isinstance(arg, dict) or set(arg) != {"from", "to"}:
        raise ValueError("unit takes {from: UNIT, to: UNIT}")
    source, target = UNITS.get(arg["from"]), UNITS.get(arg["to"])
    if source is None or target is None:
        raise ValueError(f"unit: units are {', '.join(UNITS)}; got {arg['from']!r}, {arg['to']!r}")
    if source[0] != target[0]:
        raise ValueError(f"unit: cannot convert {arg['from']} ({source[0]}) to {arg['to']}")
    if isinstance(places, bool) or not isinstance(places, int) or not 0 <= places <= 8:
        raise ValueError("unit: 'places' is a whole number from 0 to 8")
    factor, quantum = source[1] / target[1], Decimal(1).scaleb(-places)
    label = f"unit({arg['from']}->{arg['to']})"
    return label, lambda value: _arithmetic(value, label, lambda n: (n * factor).quantize(quantum))


def _scale(arg: Any) -> tuple[str, Step]:
    if isinstance(arg, bool) or not isinstance(arg, int | float):
        raise ValueError("scale takes a number")
    factor, label = Decimal(str(arg)), f"scale({arg})"
    return label, lambda value: _arithmetic(value, label, lambda n: n * factor)


def _date(arg: Any) -> tuple[str, Step]:
    if not isinstance(arg, str) or "%" not in arg:
        raise ValueError("date_format takes a strptime format, e.g. '%m/%d/%Y'")
    label = f"date_format({arg})"

    def step(value: Any) -> str:
        if isinstance(value, date):
            return value.isoformat()
        try:
            return datetime.strptime(str(value).strip(), arg).date().isoformat()  # noqa: DTZ007 - a date only
        except ValueError:
            raise TransformError(f"{label} cannot read {_shown(value)}") from None

    return label, step


def _datetime(arg: Any, timezone: Any) -> tuple[str, Step]:
    if not isinstance(arg, str) or "%" not in arg:
        raise ValueError("datetime_format takes a strptime format, e.g. '%m/%d/%Y %H:%M'")
    zone = None
    if timezone is not None:
        try:
            zone = ZoneInfo(str(timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"datetime_format: unknown timezone {timezone!r}") from None
    elif "%z" not in arg:
        raise ValueError("datetime_format needs a 'timezone' unless the format has %z")
    label = f"datetime_format({arg})"

    def step(value: Any) -> str:
        try:
            parsed = datetime.strptime(str(value).strip(), arg)  # noqa: DTZ007 - zone set below
        except ValueError:
            raise TransformError(f"{label} cannot read {_shown(value)}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone)
        return parsed.isoformat()

    return label, step


def _split(arg: Any) -> tuple[str, Step]:
    if not isinstance(arg, str) or not arg:
        raise ValueError("split takes the separator, e.g. ';'")
    label = f"split({arg})"

    def step(value: Any) -> Any:
        if isinstance(value, list):
            return value
        if not isinstance(value, str):
            raise TransformError(f"{label} cannot read {_shown(value)}: not text")
        return [part.strip() for part in value.split(arg) if part.strip()]

    return label, step


def _boolean(arg: Any) -> tuple[str, Step]:
    if (
        not isinstance(arg, dict)
        or not arg
        or not all(isinstance(k, str) and isinstance(v, bool) for k, v in arg.items())
    ):
        raise ValueError('boolean takes {"Y": true, "N": false} (quoted text -> true/false)')
    table = {k.casefold(): v for k, v in arg.items()}
    label = f"boolean({', '.join(arg)})"

    def step(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        found: bool | None = table.get(str(value).strip().casefold())
        if found is None:
            raise TransformError(f"{label} cannot read {_shown(value)}")
        return found

    return label, step


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
