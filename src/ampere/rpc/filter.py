"""CLN's JSON `filter`: keep only the members the caller asked for.

`{"field": true, "arr": [{"x": true}]}` keeps `field` and, in each element of `arr`, `x`.  Where the
filter's shape does not match the result's, the member is kept whole and a warning is added
(`warning_parameter_filter`), as lightningd does.
"""

from __future__ import annotations

from typing import Any


def apply_filter(value: Any, flt: Any, warnings: list[str], path: str = "") -> Any:
    if flt is True:
        return value
    if isinstance(flt, dict):
        if not isinstance(value, dict):
            warnings.append(f"{path or 'result'}: filter is an object, result is not")
            return value
        return {k: apply_filter(value[k], f, warnings, f"{path}.{k}" if path else k) for k, f in flt.items() if k in value}
    if isinstance(flt, list) and len(flt) == 1:
        if not isinstance(value, list):
            warnings.append(f"{path or 'result'}: filter is an array, result is not")
            return value
        return [apply_filter(v, flt[0], warnings, f"{path}[]") for v in value]
    warnings.append(f"{path or 'result'}: filter must be true, an object or a one-element array")
    return value


def filter_result(result: Any, flt: Any) -> Any:
    warnings: list[str] = []
    out = apply_filter(result, flt, warnings)
    if warnings and isinstance(out, dict):
        out["warning_parameter_filter"] = "; ".join(warnings)
    return out
