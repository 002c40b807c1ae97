"""Incoming parameters are checked against the hints before the function runs."""

from typing import Any, Literal, Optional, TypedDict, Union

import pytest

from plexus_sdk import ErrorKind, Plugin, PluginError
from plexus_sdk.testing import TestHost


class Row(TypedDict):
    date: str
    rain: float


plugin = Plugin("test.validation", version="0.1.0")


@plugin.operation
def take(
    ctx,
    values: list[float],
    count: int = 1,
    flag: bool = False,
    label: Optional[str] = None,
    how: Literal["mean", "sum"] = "mean",
    rows: list[Row] = [],
    table: dict[str, int] = {},
    either: Union[int, list[int]] = 0,
    anything: Any = None,
):
    return {
        "values": values,
        "count": count,
        "flag": flag,
        "label": label,
        "how": how,
        "rows": rows,
        "table": table,
        "either": either,
        "anything": anything,
        "types": [type(v).__name__ for v in values] + [type(count).__name__],
    }


@plugin.operation
def defaults(ctx, n: int = 3):
    return n


host = TestHost(plugin)


def invalid(params) -> str:
    with pytest.raises(PluginError) as caught:
        host.call("take", params)
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    assert not caught.value.retryable
    return caught.value.message


def test_valid_parameters_pass_as_keyword_arguments_with_defaults():
    out = host.call("take", {"values": [1, 2.5], "count": 2.0, "label": None, "how": "sum"})
    assert out["values"] == [1.0, 2.5]
    assert out["types"] == ["float", "float", "int"]  # floats for `float`, an int for `int`
    assert (out["count"], out["label"], out["how"], out["rows"]) == (2, None, "sum", [])


def test_null_or_no_parameters_mean_all_defaults():
    assert host.call("defaults") == 3
    assert host.call("defaults", {}) == 3
    assert host.call("defaults", {"n": 5}) == 5


def test_a_misspelled_key_is_named_with_a_suggestion():
    message = invalid({"values": [], "cuont": 2})
    assert message == (
        "parameters of `take`: unknown parameter `cuont` (did you mean `count`?); expected: `values`, `count`, "
        "`flag`, `label`, `how`, `rows`, `table`, `either`, `anything`"
    )


def test_a_missing_required_key_is_named():
    assert invalid({"count": 1}) == "parameters of `take`: missing required parameter `values`"


def test_every_problem_is_reported():
    message = invalid({"count": "x", "flag": 1})
    assert "`count`: expected an integer, got a string \"x\"" in message
    assert "`flag`: expected a boolean, got a number 1" in message
    assert "missing required parameter `values`" in message


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"values": "1"}, '`values`: expected an array, got a string "1"'),
        ({"values": [1, None]}, "`values[1]`: expected a number, got null"),
        ({"values": [True]}, "`values[0]`: expected a number, got a boolean true"),
        ({"values": [], "count": 1.5}, "`count`: expected an integer, got a number 1.5"),
        ({"values": [], "count": False}, "`count`: expected an integer, got a boolean false"),
        ({"values": [], "label": 3}, "`label`: expected a string or null, got a number 3"),
        ({"values": [], "how": "median"}, '`how`: expected one of "mean", "sum", got a string "median"'),
        ({"values": [], "rows": [{"date": "d"}]}, "`rows[0]`: missing key `rain`"),
        ({"values": [], "rows": [{"date": "d", "rain": 1, "wind": 2}]}, "`rows[0]`: unknown key `wind`"),
        ({"values": [], "rows": [{"date": 1, "rain": 1}]}, "`rows[0].date`: expected a string, got a number 1"),
        ({"values": [], "table": {"a b": "x"}}, '`table["a b"]`: expected an integer, got a string "x"'),
        ({"values": [], "either": [1, "x"]}, '`either[1]`: expected an integer, got a string "x"'),
        ({"values": [], "either": "x"}, '`either`: expected an integer or an array, got a string "x"'),
    ],
)
def test_wrong_types_are_named_by_path(params, expected):
    assert expected in invalid(params)


def test_parameters_must_be_an_object():
    assert invalid([1, 2]) == "parameters of `take`: expected a JSON object of named parameters, got an array of 2"


def test_any_takes_any_json():
    assert host.call("take", {"values": [], "anything": {"a": [1, None]}})["anything"] == {"a": [1, None]}


def test_parameter_text_that_is_not_json_is_invalid_input():
    from plexus_sdk import ExecutionContext

    with pytest.raises(PluginError) as caught:
        host.call_with(ExecutionContext(operation="defaults", parameters="{nope"))
    assert caught.value.kind is ErrorKind.INVALID_INPUT
    assert caught.value.message.startswith("parameters of `defaults` are not valid JSON")


def test_kwargs_accept_other_keys_of_their_type():
    p = Plugin("test.kwargs", version="0.1.0")

    @p.operation
    def tags(ctx, name: str, **tags: str):
        return {"name": name, "tags": tags}

    h = TestHost(p)
    assert h.call("tags", {"name": "a", "colour": "red"}) == {"name": "a", "tags": {"colour": "red"}}
    with pytest.raises(PluginError, match='`size`: expected a string, got a number 3'):
        h.call("tags", {"name": "a", "size": 3})
