"""Schema derivation: type hints → JSON Schema (what the metadata declares)."""

from typing import Annotated, Any, Dict, List, Literal, Optional, TypedDict, Union

import pytest

from plexus_sdk import Context, Plugin
from plexus_sdk.schema import JSON_SCHEMA_DIALECT, json_type, params_of


def schema(hint):
    return json_type(hint).schema


def test_scalars():
    assert schema(str) == {"type": "string"}
    assert schema(int) == {"type": "integer"}
    assert schema(float) == {"type": "number"}
    assert schema(bool) == {"type": "boolean"}
    assert schema(type(None)) == {"type": "null"}
    assert schema(Any) == {}


def test_containers():
    assert schema(list) == {"type": "array"}
    assert schema(List[int]) == {"type": "array", "items": {"type": "integer"}}
    assert schema(list[list[str]]) == {"type": "array", "items": {"type": "array", "items": {"type": "string"}}}
    assert schema(dict) == {"type": "object"}
    assert schema(Dict[str, float]) == {"type": "object", "additionalProperties": {"type": "number"}}
    assert schema(dict[str, Any]) == {"type": "object", "additionalProperties": {}}


def test_optional_and_unions():
    assert schema(Optional[str]) == {"type": ["string", "null"]}
    assert schema(int | None) == {"type": ["integer", "null"]}
    assert schema(Optional[list[int]]) == {"type": ["array", "null"], "items": {"type": "integer"}}
    assert schema(Union[int, str]) == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert schema(Optional[Literal["a"]]) == {"anyOf": [{"type": "string", "enum": ["a"]}, {"type": "null"}]}


def test_literals():
    assert schema(Literal["mean", "sum"]) == {"type": "string", "enum": ["mean", "sum"]}
    assert schema(Literal[1, 2]) == {"enum": [1, 2]}


def test_typed_dict():
    class Row(TypedDict):
        date: str
        rain: float

    assert schema(list[Row]) == {
        "type": "array",
        "items": {
            "type": "object",
            "title": "Row",
            "properties": {"date": {"type": "string"}, "rain": {"type": "number"}},
            "required": ["date", "rain"],
            "additionalProperties": False,
        },
    }


def test_typed_dict_with_optional_keys():
    class Opts(TypedDict, total=False):
        limit: int

    assert schema(Opts)["required"] == []


def test_annotated_gives_a_description():
    assert schema(Annotated[int, "how many"]) == {"type": "integer", "description": "how many"}


@pytest.mark.parametrize("hint", [set, bytes, tuple, tuple[int, int], complex, dict[int, str], Literal[b"x"], object.__class__])
def test_unsupported_hints_are_refused_naming_the_place(hint):
    with pytest.raises(TypeError, match="here"):
        json_type(hint, "here")


def test_params_schema_of_a_function():
    def op(
        ctx: Context,
        values: list[float],
        how: Literal["mean", "sum"] = "mean",
        limit: Optional[int] = None,
        note: Annotated[str, "a note"] = "",
    ) -> dict:
        """Does things.

        Args:
            values: the numbers
                to use.
            how: what to compute.
        """

    params = params_of(op, "op")
    assert params.schema == {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "op",
        "type": "object",
        "properties": {
            "values": {"type": "array", "items": {"type": "number"}, "description": "the numbers to use."},
            "how": {"type": "string", "enum": ["mean", "sum"], "description": "what to compute.", "default": "mean"},
            "limit": {"type": ["integer", "null"], "default": None},
            "note": {"type": "string", "description": "a note", "default": ""},
        },
        "required": ["values"],
        "additionalProperties": False,
    }


def test_unannotated_parameters_take_any_value_and_kwargs_allow_other_keys():
    def op(ctx, anything, **extra: int):
        pass

    s = params_of(op, "op").schema
    assert s["properties"] == {"anything": {}}
    assert s["additionalProperties"] == {"type": "integer"}


def test_a_default_that_is_not_json_is_not_declared():
    def op(ctx, when: Any = object()):
        pass

    assert params_of(op, "op").schema["properties"]["when"] == {}


def test_the_first_parameter_is_the_context():
    def no_params():
        pass

    def star(ctx, *values: int):
        pass

    def kw_only(*, ctx):
        pass

    for f in (no_params, kw_only):
        with pytest.raises(TypeError, match="first parameter receives the Context"):
            params_of(f, "x")
    with pytest.raises(TypeError, match=r"\*args"):
        params_of(star, "x")


def test_string_annotations_are_resolved():
    ns: dict = {}
    exec("from __future__ import annotations\nfrom typing import Optional\ndef op(ctx, n: Optional[int] = None) -> list[str]: pass", ns)
    assert params_of(ns["op"], "op").schema["properties"]["n"] == {"type": ["integer", "null"], "default": None}


def test_output_schema_from_the_return_annotation_or_given():
    plugin = Plugin("t.out", version="0.1.0")

    @plugin.operation
    def typed(ctx) -> list[int]:
        return []

    @plugin.operation
    def untyped(ctx):
        return 1

    @plugin.operation(output_schema={"type": "integer"})
    def given(ctx) -> int:
        return 1

    ops = {op.name: op for op in plugin.operations}
    assert ops["typed"].output_schema == {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "typed output",
        "type": "array",
        "items": {"type": "integer"},
    }
    assert ops["untyped"].output_schema is None
    assert ops["given"].output_schema == {"type": "integer"}


def test_an_unsupported_annotation_fails_at_declaration_naming_the_operation():
    plugin = Plugin("t.bad", version="0.1.0")
    with pytest.raises(TypeError, match="operation `bad` parameter `when`"):

        @plugin.operation
        def bad(ctx, when: set):
            pass
