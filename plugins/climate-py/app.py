"""Plexus plugin `plexus.climate`, in Python: monthly summaries of daily weather rows.

* ``monthly {rows, fields, date_field?}`` → ``{rows: [{month, days, <field>_mean,
  <field>_min, <field>_max, <field>_sum}, ...], month_count}``: the rows the CSV
  plugin's ``load`` gives (or an artifact of them, JSON lines:
  ``${{ steps.load.artifacts.rows }}``), grouped by month.
* ``counts {rows, field?}`` → ``{field, counts: {value: n}, total}``: how often
  each value of a text column occurs (e.g. the ``weather`` column).

Built into a WASM component by ``plexus plugin pack`` (or
``python -m plexus_sdk build``); tested in CPython by ``test_app.py``.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Union

from plexus_sdk import Context, ErrorKind, Example, Plugin, PluginError, capability

plugin = Plugin(
    id="plexus.climate",
    name="Climate",
    version="0.1.0",
    description="Monthly summaries of daily weather rows (a Python plugin).",
    authors=["The Plexus developers"],
    license="Apache-2.0",
    capabilities=[capability.WORKFLOW_STEP],
)

# How often a long loop reports progress and looks for a cancel.
EVERY = 250

DAYS = [
    {"date": "2012/01/01", "precipitation": 0.0, "temp_max": 12.5, "temp_min": 5.0, "weather": "drizzle"},
    {"date": "2012/01/02", "precipitation": 10.5, "temp_max": 10.5, "temp_min": 3.0, "weather": "rain"},
    {"date": "2012/02/01", "precipitation": 1.0, "temp_max": 8.0, "temp_min": None, "weather": "rain"},
]


def month_of(date: Any, index: int, date_field: str) -> str:
    """``YYYY-MM`` from a date such as ``2012/01/31`` or ``2012-01-31``.

    Raises:
        PluginError: invalid-input naming row ``index`` when it is not such a date.
    """
    if isinstance(date, str) and len(date) >= 7:
        year, sep, month = date[:4], date[4], date[5:7]
        if year.isdigit() and sep in "/-" and month.isdigit() and 1 <= int(month) <= 12:
            return f"{year}-{month}"
    raise PluginError.invalid_input(f"row {index}: `{date_field}` is {date!r}, not a date like 2012/01/31")


def _number(value: Any, index: int, field: str) -> Optional[float]:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PluginError.invalid_input(f"row {index}: `{field}` is {value!r}, not a number")
    return float(value)


@plugin.operation(
    examples=[
        Example(
            {"rows": DAYS, "fields": ["precipitation", "temp_min"]},
            {
                "rows": [
                    {
                        "month": "2012-01",
                        "days": 2,
                        "precipitation_mean": 5.25,
                        "precipitation_min": 0.0,
                        "precipitation_max": 10.5,
                        "precipitation_sum": 10.5,
                        "temp_min_mean": 4.0,
                        "temp_min_min": 3.0,
                        "temp_min_max": 5.0,
                        "temp_min_sum": 8.0,
                    },
                    {
                        "month": "2012-02",
                        "days": 1,
                        "precipitation_mean": 1.0,
                        "precipitation_min": 1.0,
                        "precipitation_max": 1.0,
                        "precipitation_sum": 1.0,
                        "temp_min_mean": None,
                        "temp_min_min": None,
                        "temp_min_max": None,
                        "temp_min_sum": 0.0,
                    },
                ],
                "month_count": 2,
            },
            description="two months; a null cell is skipped",
        ),
        Example(
            {"rows": [{"date": "01/02/2012", "wind": 1}], "fields": ["wind"]},
            error=ErrorKind.INVALID_INPUT,
            description="refuses a date that does not start with the year",
        ),
        Example(
            {"rows": [{"date": "2012/01/01", "wind": "calm"}], "fields": ["wind"]},
            error=ErrorKind.INVALID_INPUT,
            description="refuses text in a numeric field",
        ),
        Example({"rows": [], "fields": ["wind"]}, {"rows": [], "month_count": 0}, description="no rows, no months"),
    ]
)
def monthly(
    ctx: Context, rows: Union[list[dict[str, Any]], dict[str, Any]], fields: list[str], date_field: str = "date"
) -> dict:
    """Groups daily rows by month: per month the number of days and, for each
    numeric field, its mean, minimum, maximum and sum.

    Args:
        rows: daily rows, objects such as the CSV plugin's `load` gives, or
            an artifact of them (a reference: `${{ steps.load.artifacts.rows }}`).
        fields: the numeric fields to summarise; a null or empty cell is skipped
            (a month without values has null mean, min and max and a sum of 0).
        date_field: the field holding the date, `YYYY/MM/DD` or `YYYY-MM-DD`.
    """
    if not fields:
        raise PluginError.invalid_input("`fields` is empty: name the numeric fields to summarise")
    rows = ctx.read_rows(rows)
    months: dict[str, dict[str, Any]] = {}
    for index, row in enumerate(rows):
        if index % EVERY == 0:
            ctx.check_cancelled()
            ctx.progress(index / max(len(rows), 1), f"{index} of {len(rows)} rows")
        month = month_of(row.get(date_field), index, date_field)
        acc = months.get(month)
        if acc is None:
            acc = months[month] = {"days": 0, "values": {f: [] for f in fields}}
        acc["days"] += 1
        for field in fields:
            value = _number(row.get(field), index, field)
            if value is not None:
                acc["values"][field].append(value)
    out = []
    for month in sorted(months):
        acc = months[month]
        summary: dict[str, Any] = {"month": month, "days": acc["days"]}
        for field in fields:
            values = acc["values"][field]
            total = math.fsum(values)
            summary[f"{field}_mean"] = total / len(values) if values else None
            summary[f"{field}_min"] = min(values) if values else None
            summary[f"{field}_max"] = max(values) if values else None
            summary[f"{field}_sum"] = total
        out.append(summary)
    ctx.progress(1.0, f"{len(rows)} rows in {len(out)} months")
    ctx.log.info(f"summarised {len(rows)} rows into {len(out)} months")
    ctx.metric("rows", len(rows))
    ctx.metric("months", len(out))
    return {"rows": out, "month_count": len(out)}


@plugin.operation(
    examples=[
        Example(
            {"rows": DAYS},
            {"field": "weather", "counts": {"rain": 2, "drizzle": 1}, "total": 3},
            description="counts the weather column, most frequent first",
        ),
        Example({"rows": DAYS, "field": "wind"}, error=ErrorKind.INVALID_INPUT, description="refuses a missing field"),
    ]
)
def counts(ctx: Context, rows: list[dict[str, Any]], field: str = "weather") -> dict:
    """Counts how often each value of a text field occurs, most frequent first.

    Args:
        rows: rows (objects).
        field: the field to count.
    """
    found: dict[str, int] = {}
    for index, row in enumerate(rows):
        if index % EVERY == 0:
            ctx.check_cancelled()
        if field not in row:
            raise PluginError.invalid_input(f"row {index} has no `{field}`")
        key = str(row[field])
        found[key] = found.get(key, 0) + 1
    ordered = dict(sorted(found.items(), key=lambda kv: (-kv[1], kv[0])))
    ctx.metric("rows", len(rows))
    return {"field": field, "counts": ordered, "total": len(rows)}
