"""Durations as people write them: `90`, `90s`, `15m`, `2h`, `1h30m` (the total time budget)."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

from automl_clf.errors import SpecError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")


def parse_duration(value: str | float | int) -> float:
    """Seconds in `90`, `90s`, `15m`, `2h`, `1h30m` or `1.5h`.

    Raises:
        SpecError: anything else, or a duration that is not positive and finite.
    """
    if isinstance(value, bool):
        raise SpecError(f"a duration is a number of seconds or e.g. 90s, 15m, 2h; got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif text and re.fullmatch(rf"(?:{_DURATION.pattern})+", text):
            seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(text))
        else:
            raise SpecError(
                f"a duration is a number of seconds or e.g. 90s, 15m, 2h, 1h30m; got {value!r}"
            )
    if not math.isfinite(seconds) or seconds <= 0:
        raise SpecError(f"a duration must be positive, got {value!r}")
    return seconds


# What `parse_duration` reads, for the JSON Schema: editors then accept `budget: 15m` and flag
# `budget: 15 minutes` as the loader would.
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*|(\d+(\.\d+)?\s*[smhdSMHD]\s*)+)$"

# A spec field holding a duration: seconds as a number, or text such as 15m (stored as seconds).
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {
                    "type": "string",
                    "pattern": DURATION_PATTERN,
                    "examples": ["90s", "15m", "2h", "1h30m"],
                },
            ]
        }
    ),
]


def format_duration(seconds: float) -> str:
    """`42 s`, `3 m 05 s`, `1 h 02 m`: for the plan and the summary."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"
