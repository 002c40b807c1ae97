"""Tests of the climate plugin, in CPython through the SDK's TestHost."""

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app import DAYS, plugin
from plexus_sdk import ErrorKind, PluginError
from plexus_sdk.testing import TestHost

DATA = Path(__file__).resolve().parents[2] / "examples" / "data" / "seattle-weather.csv"
FIELDS = ["precipitation", "temp_max", "temp_min", "wind"]


def load_rows():
    """The CSV as the CSV plugin's `load` gives it: numbers as numbers."""
    with DATA.open(newline="") as f:
        return [{k: (float(v) if k in FIELDS else v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def rows():
    return load_rows()


def test_the_examples_hold():
    assert TestHost(plugin).check_examples() == 6


def test_monthly_over_four_years_of_seattle_weather(rows):
    assert len(rows) == 1461
    host = TestHost(plugin)
    out = host.call("monthly", {"rows": rows, "fields": FIELDS})
    assert out["month_count"] == 48 == len(out["rows"])
    months = [m["month"] for m in out["rows"]]
    assert months == sorted(months) and months[0] == "2012-01" and months[-1] == "2015-12"
    assert sum(m["days"] for m in out["rows"]) == 1461
    jan = out["rows"][0]
    assert jan["days"] == 31
    assert set(jan) == {"month", "days"} | {f"{f}_{s}" for f in FIELDS for s in ("mean", "min", "max", "sum")}
    # Against a direct computation.
    january = [r for r in rows if r["date"].startswith("2012/01")]
    rain = [r["precipitation"] for r in january]
    assert jan["precipitation_sum"] == pytest.approx(math.fsum(rain))
    assert jan["precipitation_mean"] == pytest.approx(math.fsum(rain) / 31)
    assert (jan["temp_max_min"], jan["temp_max_max"]) == (min(r["temp_max"] for r in january), max(r["temp_max"] for r in january))
    feb_2012 = out["rows"][1]
    assert (feb_2012["month"], feb_2012["days"]) == ("2012-02", 29)  # a leap year
    # Services: progress to the end, the metrics, a log line.
    assert host.progress[0][0] == 0.0 and host.progress[-1] == (1.0, "1461 rows in 48 months")
    assert all(a[0] <= b[0] for a, b in zip(host.progress, host.progress[1:]))
    assert host.metrics == {"rows": 1461.0, "months": 48.0}
    assert ("info", "summarised 1461 rows into 48 months") in host.logs


def test_a_bad_date_names_the_row(rows):
    bad = [dict(r) for r in rows[:5]]
    bad[3]["date"] = "Jan 4, 2012"
    with pytest.raises(PluginError) as caught:
        TestHost(plugin).call("monthly", {"rows": bad, "fields": ["wind"]})
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    assert caught.value.message == "row 3: `date` is 'Jan 4, 2012', not a date like 2012/01/31"


def test_a_missing_date_field_and_a_bad_month_are_refused():
    host = TestHost(plugin)
    with pytest.raises(PluginError, match=r"row 0: `day` is None"):
        host.call("monthly", {"rows": [{"date": "2012/01/01"}], "fields": ["x"], "date_field": "day"})
    with pytest.raises(PluginError, match=r"row 0: `date` is '2012/13/01'"):
        host.call("monthly", {"rows": [{"date": "2012/13/01"}], "fields": ["x"]})


def test_parameters_are_checked_before_the_operation_runs():
    host = TestHost(plugin)
    with pytest.raises(PluginError, match=r"unknown parameter `field` \(did you mean `fields`\?\)"):
        host.call("monthly", {"rows": [], "field": ["wind"]})
    with pytest.raises(PluginError, match=r"`rows\[1\]`: expected an object, got a number 3"):
        host.call("monthly", {"rows": [{}, 3], "fields": ["wind"]})
    with pytest.raises(PluginError, match="`fields` is empty"):
        host.call("monthly", {"rows": [], "fields": []})


def test_a_cancelled_execution_stops(rows):
    host = TestHost(plugin)
    host.cancel()
    with pytest.raises(PluginError) as caught:
        host.call("monthly", {"rows": rows, "fields": FIELDS})
    assert caught.value.kind is ErrorKind.CANCELLED


def test_counts_of_the_weather_column(rows):
    out = TestHost(plugin).call("counts", {"rows": rows})
    assert out["total"] == 1461 == sum(out["counts"].values())
    assert out["counts"] == {"sun": 714, "fog": 411, "rain": 259, "drizzle": 54, "snow": 23}
    assert list(out["counts"]) == ["sun", "fog", "rain", "drizzle", "snow"]  # most frequent first


def test_metadata():
    meta = TestHost(plugin).describe()
    assert (meta["id"], meta["version"], meta["contract_version"]) == ("plexus.climate", "0.1.0", "0.4.0")
    monthly = meta["operations"][0]
    assert monthly["params_schema"]["required"] == ["rows", "fields"]
    assert monthly["params_schema"]["properties"]["date_field"] == {
        "type": "string",
        "description": "the field holding the date, `YYYY/MM/DD` or `YYYY-MM-DD`.",
        "default": "date",
    }


@pytest.mark.skipif(not os.environ.get("PLEXUS_BIN"), reason="set PLEXUS_BIN to a plexus binary to build and call the component")
def test_the_component_gives_what_cpython_gives(rows, tmp_path):
    """Build the component with its manifest (as `plexus plugin pack` lays it out), call
    `monthly` on the whole data set through the host, compare with the in-process result."""
    folder = tmp_path / "plexus.climate"
    folder.mkdir()
    shutil.copy(Path(__file__).parent / "manifest" / "wasm.toml", folder / "plugin.toml")
    here = Path(__file__).resolve().parent
    build = [sys.executable, "-m", "plexus_sdk", "build", str(here), "--out", str(folder / "plexus_climate.wasm")]
    done = subprocess.run(build, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"rows": rows, "fields": FIELDS}))
    call = [os.environ["PLEXUS_BIN"], "call", "--plugin-folder", str(folder), "monthly", "--params", f"@{params}",
            "--json", "--cache-dir", str(tmp_path / "cache")]
    done = subprocess.run(call, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    got = json.loads(done.stdout)
    assert got["output"] == TestHost(plugin).call("monthly", {"rows": rows, "fields": FIELDS})
    assert got["metrics"] == {"rows": 1461.0, "months": 48.0}


def test_monthly_reads_its_rows_from_an_artifact_of_json_lines():
    host = TestHost(plugin)
    lines = "".join(json.dumps(day) + "\n" for day in DAYS)
    reference = host.put_artifact("rows", lines.encode(), "application/x-ndjson")
    by_reference = host.call("monthly", {"rows": reference, "fields": ["precipitation"]})
    assert by_reference == host.call("monthly", {"rows": DAYS, "fields": ["precipitation"]})
