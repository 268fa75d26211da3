"""Kubernetes resource quantities (`100m`, `"1"`, `1500Mi`, `2Gi`) as exact numbers.

Pure: used by instance-type validation (requests <= limits) and rendering. Written here rather
than imported from the kubernetes client because importing `kubernetes.utils` pulls the whole API
client into the pure part of the pipeline.
"""

from __future__ import annotations

import re
from decimal import Decimal

_SUFFIXES = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(
    r"^\+?(?P<number>[0-9]+(\.[0-9]*)?|\.[0-9]+)(?P<suffix>[eE][+-]?[0-9]+|[a-zA-Z]*)$"
)


def parse(value: str | int | float) -> Decimal:
    """The quantity's value in base units (cores, bytes); ValueError if it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"not a quantity: {value!r}")
        return Decimal(str(value))
    match = _QUANTITY.match(value.strip())
    if not match:
        raise ValueError(f"not a quantity: {value!r}")
    number, suffix = Decimal(match["number"]), match["suffix"]
    if suffix[:1] in ("e", "E"):
        try:
            return number * Decimal(10) ** int(suffix[1:])
        except ArithmeticError as err:  # decimal.Overflow on absurd exponents
            raise ValueError(f"not a quantity: {value!r}") from err
    if suffix not in _SUFFIXES:
        raise ValueError(f"not a quantity: {value!r} (unknown suffix {suffix!r})")
    return number * _SUFFIXES[suffix]


def is_valid(value: object) -> bool:
    try:
        parse(value)  # type: ignore[arg-type]
    except (ValueError, TypeError, AttributeError):
        return False
    return True
