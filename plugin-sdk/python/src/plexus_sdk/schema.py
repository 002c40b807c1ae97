"""JSON Schemas derived from type hints, and the checks that go with them.

An operation's parameters are the keyword parameters of its function; each
type hint becomes the parameter's JSON Schema (what the host shows in
``plexus plugins info``) and the check the SDK applies to the incoming value
before the function runs.

Supported hints and their schemas:

=============================== ===============================================
hint                            JSON Schema
=============================== ===============================================
``str``, ``bool``               ``{"type": "string"}``, ``{"type": "boolean"}``
``int``                         ``{"type": "integer"}`` (``2.0`` is accepted as ``2``)
``float``                       ``{"type": "number"}`` (integers are accepted, passed as ``float``)
``list[T]``, ``list``           ``{"type": "array", "items": T}``
``dict[str, T]``, ``dict``      ``{"type": "object", "additionalProperties": T}``
a ``TypedDict``                 an object with its keys (``additionalProperties: false``)
``Optional[T]``, ``T | None``   ``T`` or ``null``
``Union[A, B]``                 ``{"anyOf": [A, B]}``
``Literal["a", "b"]``           ``{"enum": ["a", "b"]}``
``Any``, no hint                ``{}`` (any JSON value)
``Annotated[T, "text"]``        ``T`` with ``"description": "text"``
=============================== ===============================================

Anything else is refused when the operation is declared (``TypeError`` naming
the parameter), not when it is called.
"""

from __future__ import annotations

import difflib
import inspect
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Invalid", "JsonType", "Params", "json_type", "params_of", "describe_value"]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class Invalid(Exception):
    """A value does not match its type: ``where`` is the path (``values[2]``)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"`{where}`: {message}" if where else message)
        self.where = where
        self.message = message


Check = Callable[[Any, str], Any]


@dataclass(frozen=True)
class JsonType:
    """A type hint compiled once: its JSON Schema and its check.

    ``check(value, where)`` returns the value to pass to the function (an
    ``int`` for a ``float`` hint becomes a ``float``) or raises
    :class:`Invalid` naming ``where``.
    """

    schema: dict
    check: Check
    accepts_null: bool = False
    any: bool = False
    """Whether it accepts any JSON value unchanged (``Any``): containers skip its per-item check."""


def describe_value(value: Any) -> str:
    """A short description of a JSON value for messages: ``a string "abc"``, ``an array``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean {'true' if value else 'false'}"
    if isinstance(value, (int, float)):
        return f"a number {value!r}"
    if isinstance(value, str):
        text = json.dumps(value)
        return f"a string {text if len(text) <= 40 else text[:37] + '...'}"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _any(value: Any, where: str) -> Any:
    return value


def _simple(name: str, expected: str, test: Callable[[Any], bool], convert: Callable[[Any], Any] | None = None) -> JsonType:
    def check(value: Any, where: str) -> Any:
        if not test(value):
            raise Invalid(where, f"expected {expected}, got {describe_value(value)}")
        return convert(value) if convert else value

    return JsonType({"type": name}, check)


_STRING = _simple("string", "a string", lambda v: isinstance(v, str))
_BOOLEAN = _simple("boolean", "a boolean", lambda v: isinstance(v, bool))
_INTEGER = _simple(
    "integer",
    "an integer",
    lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    int,
)
_NUMBER = _simple("number", "a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), float)


def _null(value: Any, where: str) -> Any:
    if value is not None:
        raise Invalid(where, f"expected null, got {describe_value(value)}")
    return None


_NULL = JsonType({"type": "null"}, _null, accepts_null=True)


def _array(items: JsonType | None) -> JsonType:
    def check(value: Any, where: str) -> Any:
        if not isinstance(value, list):
            raise Invalid(where, f"expected an array, got {describe_value(value)}")
        if items is None or items.any:
            return value
        return [items.check(v, f"{where}[{i}]") for i, v in enumerate(value)]

    schema: dict = {"type": "array"}
    if items is not None:
        schema["items"] = items.schema
    return JsonType(schema, check)


def _key_path(where: str, key: str) -> str:
    return f"{where}.{key}" if key.isidentifier() else f"{where}[{json.dumps(key)}]"


def _object(values: JsonType | None) -> JsonType:
    def check(value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            raise Invalid(where, f"expected an object, got {describe_value(value)}")
        if values is None or values.any:
            return value
        return {k: values.check(v, _key_path(where, k)) for k, v in value.items()}

    schema: dict = {"type": "object"}
    if values is not None:
        schema["additionalProperties"] = values.schema
    return JsonType(schema, check)


def _unknown_key(key: str, known: list[str], what: str = "key") -> str:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    expected = ", ".join(f"`{k}`" for k in known) or "none"
    return f"unknown {what} `{key}`{hint}; expected: {expected}"


def _typed_dict(hint: Any, where: str) -> JsonType:
    try:
        hints = typing.get_type_hints(hint, include_extras=True)
    except Exception as e:  # a forward reference that does not resolve
        raise TypeError(f"{where}: cannot resolve the type hints of {hint.__name__}: {e}") from e
    required = set(getattr(hint, "__required_keys__", hints))
    fields = {name: json_type(h, f"{where} key `{name}`") for name, h in hints.items()}
    order = list(fields)

    def check(value: Any, where_: str) -> Any:
        if not isinstance(value, dict):
            raise Invalid(where_, f"expected an object, got {describe_value(value)}")
        for key in value:
            if key not in fields:
                raise Invalid(where_, _unknown_key(key, order))
        for key in order:
            if key in required and key not in value:
                raise Invalid(where_, f"missing key `{key}`")
        return {k: fields[k].check(v, _key_path(where_, k)) for k, v in value.items()}

    schema = {
        "type": "object",
        "title": hint.__name__,
        "properties": {k: t.schema for k, t in fields.items()},
        "required": [k for k in order if k in required],
        "additionalProperties": False,
    }
    return JsonType(schema, check)


def _union(members: list[JsonType]) -> JsonType:
    accepts_null = any(m.accepts_null for m in members)
    others = [m for m in members if m.schema != {"type": "null"}]
    # `T | None` with a plain `type`: {"type": ["string", "null"], ...}.
    if accepts_null and len(others) == 1 and isinstance(others[0].schema.get("type"), str) and "enum" not in others[0].schema:
        schema = dict(others[0].schema)
        schema["type"] = [schema["type"], "null"]
    else:
        schema = {"anyOf": [m.schema for m in members]}
    expected = " or ".join(_expected(m.schema) for m in members)

    def check(value: Any, where: str) -> Any:
        problems = []
        for member in members:
            try:
                return member.check(value, where)
            except Invalid as e:
                problems.append(e)
        # One member of the right JSON type: its (deeper) problem says more.
        deeper = [p for p in problems if p.where != where]
        if len(deeper) == 1:
            raise deeper[0]
        raise Invalid(where, f"expected {expected}, got {describe_value(value)}")

    return JsonType(schema, check, accepts_null)


def _expected(schema: dict) -> str:
    kind = schema.get("type")
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    return {
        "string": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "a boolean",
        "array": "an array",
        "object": "an object",
        "null": "null",
    }.get(kind if isinstance(kind, str) else "", "a value of another shape")


def _literal(values: tuple) -> JsonType:
    for v in values:
        if not (v is None or isinstance(v, (str, int, float, bool))):
            raise TypeError(f"Literal value {v!r} is not a JSON scalar")
    allowed = list(values)

    def check(value: Any, where: str) -> Any:
        for v in allowed:
            # `True == 1` in Python; JSON tells them apart.
            if value == v and isinstance(value, bool) == isinstance(v, bool):
                return v
        raise Invalid(where, f"expected one of {', '.join(json.dumps(v) for v in allowed)}, got {describe_value(value)}")

    schema: dict = {"enum": allowed}
    kinds = {type(v) for v in allowed}
    if kinds == {str}:
        schema = {"type": "string", "enum": allowed}
    return JsonType(schema, check, accepts_null=None in allowed)


_SUPPORTED = "str, int, float, bool, list[T], dict[str, T], a TypedDict, Optional[T], T | None, Union, Literal, Any"


def json_type(hint: Any, where: str = "value") -> JsonType:
    """Compile a type hint into its JSON Schema and check.

    Args:
        hint: the type hint (already resolved: not a string).
        where: what the hint belongs to, for the error message.

    Raises:
        TypeError: the hint has no JSON shape (e.g. a class, ``set``, ``bytes``,
            ``tuple``, a dict with non-string keys), naming ``where``.
    """
    if hint is Any or hint is inspect.Parameter.empty or hint is object:
        return JsonType({}, _any, accepts_null=True, any=True)
    if hint is None or hint is type(None):
        return _NULL
    if hint is str:
        return _STRING
    if hint is bool:
        return _BOOLEAN
    if hint is int:
        return _INTEGER
    if hint is float:
        return _NUMBER
    if hint is list or hint is typing.List:
        return _array(None)
    if hint is dict or hint is typing.Dict:
        return _object(None)
    if typing.is_typeddict(hint):
        return _typed_dict(hint, where)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        inner = json_type(args[0], where)
        notes = [a for a in args[1:] if isinstance(a, str)]
        if not notes:
            return inner
        return JsonType({**inner.schema, "description": notes[0]}, inner.check, inner.accepts_null, inner.any)
    for wrapper in ("Required", "NotRequired", "ReadOnly"):
        if origin is not None and origin is getattr(typing, wrapper, object()):
            return json_type(args[0], where)
    if origin is list:
        return _array(json_type(args[0], f"{where} items") if args else None)
    if origin is dict:
        if args and args[0] not in (str, Any):
            raise TypeError(f"{where}: dict keys must be str (JSON object keys are strings), not {args[0]!r}")
        return _object(json_type(args[1], f"{where} values") if args else None)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        return _union([json_type(a, where) for a in args])
    if origin is typing.Literal:
        try:
            return _literal(args)
        except TypeError as e:
            raise TypeError(f"{where}: {e}") from None
    raise TypeError(f"{where}: type {hint!r} has no JSON Schema; use one of: {_SUPPORTED}")


@dataclass
class _Param:
    name: str
    type: JsonType
    required: bool


@dataclass
class Params:
    """The keyword parameters of an operation function: their JSON Schema and
    the check of an incoming parameter object.

    Use :func:`params_of` to build one.
    """

    operation: str
    params: dict[str, _Param]
    extra: JsonType | None = None
    schema: dict = field(default_factory=dict)

    def check(self, value: Any) -> dict:
        """The keyword arguments for the function, from the parameters (a JSON
        object; ``null`` means "all defaults").

        Raises:
            Invalid: every problem found, one per ``; ``: not an object, a
                misspelled or unknown key, a missing required key, a value of
                the wrong type (named by its path, e.g. ``values[2]``).
        """
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise Invalid("", f"expected a JSON object of named parameters, got {describe_value(value)}")
        problems: list[str] = []
        kwargs: dict[str, Any] = {}
        known = list(self.params)
        for key, v in value.items():
            param = self.params.get(key)
            try:
                if param is not None:
                    kwargs[key] = param.type.check(v, key)
                elif self.extra is not None:
                    kwargs[key] = self.extra.check(v, key)
                else:
                    problems.append(_unknown_key(key, known, "parameter"))
            except Invalid as e:
                problems.append(str(e))
        for name, param in self.params.items():
            if param.required and name not in value:
                problems.append(f"missing required parameter `{name}`")
        if problems:
            raise Invalid("", "; ".join(problems))
        return kwargs


def _doc_params(doc: str | None) -> dict[str, str]:
    """Parameter descriptions from a Google-style ``Args:`` section."""
    found: dict[str, str] = {}
    if not doc:
        return found
    lines = inspect.cleandoc(doc).splitlines()
    inside, indent, current = False, None, None
    for line in lines:
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:", "Params:"):
            inside, indent, current = True, None, None
            continue
        if not inside:
            continue
        if not stripped:
            continue
        level = len(line) - len(line.lstrip())
        if level == 0:
            break  # the next section
        if indent is None:
            indent = level
        if level == indent and ":" in stripped:
            name, _, text = stripped.partition(":")
            name = name.split("(")[0].strip().lstrip("*")
            current = name
            found[name] = text.strip()
        elif current is not None and level > indent:
            found[current] = (found[current] + " " + stripped).strip()
    return found


def first_paragraph(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line ("" if none)."""
    if not doc:
        return ""
    paragraph = inspect.cleandoc(doc).split("\n\n", 1)[0]
    return " ".join(paragraph.split())


def _json_default(value: Any) -> tuple[bool, Any]:
    try:
        return True, json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        return False, None


def params_of(func: Callable, operation: str) -> Params:
    """The parameters of operation function ``func``: every parameter after the
    first (which receives the :class:`~plexus_sdk.Context`).

    A parameter with a default is optional; the others are required. A
    ``**kwargs: T`` parameter accepts other keys of type ``T`` (else unknown
    keys are refused: ``additionalProperties: false``). Descriptions come
    from ``Annotated[T, "text"]`` or from the docstring's ``Args:`` section.

    Raises:
        TypeError: the function takes no context parameter, has ``*args`` or
            positional-only parameters, or a hint has no JSON Schema.
    """
    signature = inspect.signature(func)
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as e:
        raise TypeError(f"operation `{operation}`: cannot resolve its type hints: {e}") from e
    parameters = list(signature.parameters.values())
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise TypeError(
            f"operation `{operation}`: the first parameter receives the Context: def {func.__name__}(ctx, ...)"
        )
    docs = _doc_params(func.__doc__)
    params: dict[str, _Param] = {}
    extra: JsonType | None = None
    properties: dict[str, dict] = {}
    required: list[str] = []
    for p in parameters[1:]:
        where = f"operation `{operation}` parameter `{p.name}`"
        hint = hints.get(p.name, Any)
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            extra = json_type(hint, where)
            continue
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            raise TypeError(f"{where}: parameters are passed by name; *args and positional-only parameters cannot be")
        jt = json_type(hint, where)
        schema = dict(jt.schema)
        if p.name in docs and "description" not in schema:
            schema["description"] = docs[p.name]
        has_default = p.default is not inspect.Parameter.empty
        if has_default:
            ok, default = _json_default(p.default)
            if ok:
                schema["default"] = default
        else:
            required.append(p.name)
        params[p.name] = _Param(p.name, jt, not has_default)
        properties[p.name] = schema
    schema: dict = {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": operation,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": extra.schema if extra is not None else False,
    }
    return Params(operation, params, extra, schema)


def output_schema_of(func: Callable, operation: str) -> dict | None:
    """The JSON Schema of ``func``'s return annotation, or ``None`` without one.

    Raises:
        TypeError: the annotation has no JSON Schema.
    """
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as e:
        raise TypeError(f"operation `{operation}`: cannot resolve its type hints: {e}") from e
    if "return" not in hints:
        return None
    jt = json_type(hints["return"], f"operation `{operation}` return annotation")
    return {"$schema": JSON_SCHEMA_DIALECT, "title": f"{operation} output", **jt.schema}
