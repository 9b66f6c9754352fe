"""Input objects and arguments converted by a plan made once per type, not per value.

graphql-core checks and coerces every argument and input field before a resolver runs:
scalars are parsed, enums are their Python members, defaults are filled in. What is left is
building the input classes, and strawberry's general conversion (``convert_argument``) finds
each field's GraphQL name and type again for every value, about 6 µs a field: ~90 µs for a
``startRun`` input, ~0.5 ms for a six-write ``writeBatch``, as much as the rest of its
argument handling together.

:func:`install` gives each input class of the schema strawberry's ``from_input`` hook (the
class built from the coerced value) with a plan made once: for each field its GraphQL name,
its Python name and whether the value is taken as it is. A field whose value strawberry would
return as it is (a scalar or an enum, nullable or not) is copied; a list of them is copied as
a new list (graphql-core hands every request the same default list); anything else (a nested
input, a list of inputs) goes through strawberry's own conversion (``InputContext.convert``),
which uses these plans for the inputs inside it. A class with a field whose type this does not
classify (``Maybe``, a generic, a lazy type, ``GlobalID``) keeps strawberry's conversion.
:func:`converter` is the same for a field's arguments (``writeBatch`` converts each
operation's arguments itself). ``tests/test_wire_inputs.py`` holds both to strawberry's own
outcome for generated values of every input and every mutation's arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING
from typing import Any

from strawberry.relay.types import GlobalID
from strawberry.types.arguments import StrawberryArgument, _is_leaf_type, convert_argument
from strawberry.types.base import (
    StrawberryList,
    StrawberryMaybe,
    StrawberryOptional,
    has_object_definition,
)
from strawberry.types.enum import has_enum_definition
from strawberry.types.unset import UNSET

#: How a value is taken: as it is; as a copied list; by strawberry's conversion unless it is
#: null; by strawberry's conversion always (a type this module does not classify).
AS_IS, LIST_COPY, CONVERT, GENERAL = 0, 1, 2, 3


def _kind(type_: Any, scalars: Mapping[object, Any]) -> int:
    """How strawberry's ``convert_argument`` treats a value of ``type_``."""
    if isinstance(type_, StrawberryMaybe):
        return GENERAL  # a null becomes Some(None), or is refused
    if isinstance(type_, StrawberryOptional):
        return _kind(type_.of_type, scalars)
    if isinstance(type_, StrawberryList):
        inner = _kind(type_.of_type, scalars)
        return LIST_COPY if inner == AS_IS else GENERAL if inner == GENERAL else CONVERT
    if type_ is GlobalID:
        return GENERAL
    if _is_leaf_type(type_, scalars) or has_enum_definition(type_):
        return AS_IS  # graphql-core has parsed it: strawberry returns it as it is
    if has_object_definition(type_) and type_.__strawberry_definition__.is_input:
        return CONVERT
    return GENERAL


Plan = tuple[tuple[str, str, int, Any], ...]


def _take(plan: Plan, value: Mapping[str, Any], into: dict[str, Any], convert: Any) -> None:
    for graphql_name, python_name, kind, type_ in plan:
        if graphql_name not in value:
            continue
        v = value[graphql_name]
        if kind == AS_IS or (kind != GENERAL and (v is None or v is UNSET)):
            into[python_name] = v
        elif kind == LIST_COPY:
            into[python_name] = list(v)
        else:
            into[python_name] = convert(v, type_, graphql_name)


def install(schema: Any) -> None:
    """Give every input class of ``schema`` (a ``strawberry.Schema``) without a ``from_input``
    of its own a planned one."""
    config = schema.config
    scalars = schema.schema_converter.scalar_registry
    for name in list(schema._schema.type_map):
        definition = schema.get_type_by_name(name)
        if not getattr(definition, "is_input", False) or definition.from_input is not None:
            continue
        plan: list[tuple[str, str, int, Any]] = []
        for field in definition.fields:
            type_ = field.resolve_type(type_definition=definition)
            kind = _kind(type_, scalars)
            if kind == GENERAL:
                break  # strawberry's conversion for the whole class
            assert field.python_name is not None
            plan.append((config.name_converter.from_field(field), field.python_name, kind, type_))
        else:
            # as strawberry does: a field the value lacks with no default of its own is None
            # (graphql-core has checked that every required field is there)
            nulls = {
                f.python_name: None
                for f in definition.fields
                if f.default_value is MISSING and f.default_factory is MISSING
            }
            definition.from_input = _builder(tuple(plan), nulls)


def _builder(plan: Plan, nulls: dict[str, None]) -> Callable[[type, Mapping[str, Any], Any], Any]:
    if all(kind == AS_IS and g == p for g, p, kind, _ in plan):
        # every field taken as it is, under its own name (a metric point: 10,000 of them in a
        # logBatch): the coerced value, which holds the class's fields only, is the arguments
        def as_is(cls: type, value: Mapping[str, Any], context: Any) -> Any:
            return cls(**{**nulls, **value})

        return as_is

    def from_input(cls: type, value: Mapping[str, Any], context: Any) -> Any:
        kwargs: dict[str, Any] = dict(nulls)
        _take(plan, value, kwargs, context.convert)
        return cls(**kwargs)

    return from_input


def converter(
    arguments: Sequence[StrawberryArgument], schema: Any
) -> Callable[[Mapping[str, Any], Any], dict[str, Any]]:
    """Strawberry's ``convert_arguments`` for one field's ``arguments``, planned once: the
    keyword arguments of its resolver from its coerced argument values."""
    config = schema.config
    scalars = schema.schema_converter.scalar_registry
    plan: list[tuple[str, str, int, Any]] = []
    for argument in arguments:
        assert argument.python_name is not None
        name = config.name_converter.from_argument(argument)
        plan.append((name, argument.python_name, _kind(argument.type, scalars), argument.type))
    planned = tuple(plan)

    def convert(value: Mapping[str, Any], info: Any) -> dict[str, Any]:
        def one(v: Any, type_: Any, name: str) -> Any:
            return convert_argument(v, type_, scalars, config, info, path=(name,))

        kwargs: dict[str, Any] = {}
        _take(planned, value, kwargs, one)
        return kwargs

    return convert
