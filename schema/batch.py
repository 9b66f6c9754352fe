"""``writeBatch``: many structural writes in one request and one transaction.

A pipeline step, an importer or an adapter writes runs, their params, data, model versions
and aliases by the hundred; one request each costs a round trip, a parse and a transaction
apiece. ``writeBatch(operations: [WriteOperation!]!)`` takes them as a list, as ML
Metadata's ``put_execution`` takes an execution with its artifacts and events:

- each operation names a mutation of this schema (``call``) and gives its arguments as JSON
  (``args``: the same names and values as that mutation takes, checked against its argument
  types exactly as variables are);
- they run in order, each through that mutation's own resolver (the same validation, audit
  entries, policies and webhooks as the single call), inside one store transaction on one
  worker thread: all of them are written or none (an error names ``operations[i]``);
- each is authorized as its mutation is (:data:`lineagehub.schema.authz.RULES`), when it
  runs, so it sees the runs and versions the batch made before it;
- an argument that names a node (``runId``, ``ref``, ``id``, ``input.parent``,
  ``input.derivedFrom``) may be ``"$i"``: the id of what operation ``i`` (an earlier one)
  wrote, so a batch can register a version and alias it without knowing its number.

Webhooks and other after-commit work run once the whole batch has committed.
"""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any

import graphql.utilities
import strawberry
from graphql import GraphQLField, Undefined, coerce_input_value, is_non_null_type
from strawberry.scalars import JSON

from lineagehub.graph import HubError, ValidationError
from lineagehub.schema.context import INLINE_BATCH_OPERATIONS, INLINE_BATCH_VALUES
from lineagehub.schema.inputs import converter
from lineagehub.schema.registry import PromoteResult
from lineagehub.schema.types import I, NodeInterface

#: graphql-core 3.3's checker (3.2 reports problems from coerce_input_value itself)
_validate: Any = getattr(graphql.utilities, "validate_input_value", None)

#: The mutations a batch may call.
BATCHABLE = (
    "startRun",
    "logBatch",
    "endRun",
    "logDataset",
    "logInputModel",
    "logArtifact",
    "logModel",
    "registerModelVersion",
    "setAlias",
    "removeAlias",
    "promoteModelVersion",
    "requestPromotion",
    "recordDeployment",
    "retireDeployment",
)
#: Operations one batch holds at most (the request's size is bounded besides).
MAX_OPERATIONS = 10_000
#: Arguments (and ``input`` fields) that name nodes, where ``"$i"`` refers to operation i.
REFERENCE_ARGS = ("runId", "ref", "id")
REFERENCE_INPUT_FIELDS = ("parent", "derivedFrom")
_PROMOTIONS = ("promoteModelVersion", "requestPromotion")
_REFERENCE = re.compile(r"\$(\d{1,5})")


@strawberry.input(
    description="One write of a batch: a mutation's name and its arguments. Arguments naming "
    'a node (runId, ref, id, input.parent, input.derivedFrom) may be "$i", the id of what '
    "operation i of the batch wrote."
)
class WriteOperation:
    call: str = strawberry.field(description=f"The mutation: one of {', '.join(BATCHABLE)}.")
    args: JSON | None = strawberry.field(
        default=None, description="Its arguments by name, as the mutation takes them."
    )


@strawberry.type(description="What one operation of a batch wrote.")
class WriteResult:
    call: str
    node: NodeInterface | None = strawberry.field(
        description="The node it wrote (a run, a dataset or model version, an artifact, a "
        "deployment); null for logBatch and removeAlias."
    )
    promotion: PromoteResult | None = strawberry.field(
        description="For promoteModelVersion and requestPromotion: the outcome."
    )


def _fail(index: int, call: str, error: HubError) -> HubError:
    """``error`` naming the operation it came from (same code, same class)."""
    where = f"operations[{index}] ({call})"
    error.message = f"{where}: {error.message}"
    error.args = (error.message,)
    if isinstance(error, ValidationError):
        error.field = f"{where}.{error.field}" if error.field else where
    return error


def _resolve_refs(value: Any, done: list[str | None], index: int) -> Any:
    if isinstance(value, list):
        return [_resolve_refs(v, done, index) for v in value]
    if not isinstance(value, str):
        return value
    match = _REFERENCE.fullmatch(value)
    if match is None:
        return value
    i = int(match.group(1))
    if i >= index:
        raise ValidationError(f"{value!r} refers to operation {i}: only earlier ones can be")
    if done[i] is None:
        raise ValidationError(f"{value!r} refers to operation {i}, which wrote no node")
    return done[i]


def _with_refs(args: dict[str, Any], done: list[str | None], index: int) -> dict[str, Any]:
    out = dict(args)
    for name in REFERENCE_ARGS:
        if name in out:
            out[name] = _resolve_refs(out[name], done, index)
    if isinstance(out.get("input"), dict):
        inner = dict(out["input"])
        for name in REFERENCE_INPUT_FIELDS:
            if name in inner:
                inner[name] = _resolve_refs(inner[name], done, index)
        out["input"] = inner
    return out


@functools.cache
def _fields(schema: Any) -> dict[str, Any]:
    """The strawberry fields of the batchable mutations, by GraphQL name."""
    mutation = schema.get_type_by_name("Mutation")
    named = {schema.config.name_converter.get_graphql_name(f): f for f in mutation.fields}
    return {name: field for name, field in named.items() if name in BATCHABLE}


@functools.cache
def _converters(schema: Any) -> dict[str, Any]:
    """Each batchable mutation's argument conversion, planned once (:mod:`.inputs`)."""
    return {name: converter(f.arguments, schema) for name, f in _fields(schema).items()}


def _coerce(name: str, value: Any, type_: Any) -> Any:
    """``value`` coerced to ``type_`` (argument ``name``), or the first problem, named."""
    problems: list[str] = []

    def note(error: Any, path: Any) -> None:
        where = ".".join(str(p) for p in [name, *(path or ())])
        problems.append(f"{where}: {getattr(error, 'message', error)}")

    if _validate is not None:  # graphql-core 3.3: as its variables are, the diagnosis
        coerced = coerce_input_value(value, type_)  # only for a value that fails
        if coerced is Undefined:
            _validate(value, type_, note)
    else:  # graphql-core 3.2: on_error(path, invalid value, error)
        coerce: Any = coerce_input_value
        coerced = coerce(value, type_, lambda p, v, e: note(e, p))
    if problems or coerced is Undefined:
        message = problems[0] if problems else f"{name}: not a valid {type_}"
        raise ValidationError(message, field=f"args.{message.split(':', 1)[0]}")
    return coerced


def _coerced(definition: GraphQLField, args: Any) -> dict[str, Any]:
    """``args`` checked against the mutation's arguments as variables are."""
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ValidationError("args must be a JSON object", field="args")
    unknown = sorted(set(args) - set(definition.args))
    if unknown:
        raise ValidationError(
            f"unknown argument {unknown[0]!r}: it takes {sorted(definition.args)}",
            field=f"args.{unknown[0]}",
        )
    out: dict[str, Any] = {}
    for name, arg in definition.args.items():
        if name in args:
            out[name] = _coerce(name, args[name], arg.type)
        elif is_non_null_type(arg.type) and arg.default_value is Undefined:
            raise ValidationError(f"argument {name!r} is required", field=f"args.{name}")
    return out


def _short(args: list[Any]) -> bool:
    """Whether a batch of operations with these arguments is short enough for the event
    loop: at most :data:`INLINE_BATCH_OPERATIONS` of them, holding at most
    :data:`INLINE_BATCH_VALUES` JSON values in all (counted no further)."""
    most = INLINE_BATCH_VALUES
    return len(args) <= INLINE_BATCH_OPERATIONS and _values(args, most + 1) <= most


def _values(value: Any, most: int) -> int:
    """How many JSON values (containers and scalars) ``value`` holds, counted up to ``most``
    (so a hostile document of empty lists costs no more to count than any other)."""
    count, stack = 0, [value]
    while stack and count < most:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


@strawberry.type
class BatchMutation:
    """The ``writeBatch`` root field (merged into ``Mutation``)."""

    @strawberry.mutation(
        description="Run many writes (runs, params and metrics, datasets, model versions, "
        "aliases, promotions, deployments) in one transaction: all or none. Each is "
        "authorized and checked as its own mutation is."
    )
    async def write_batch(self, info: I, operations: list[WriteOperation]) -> list[WriteResult]:
        from lineagehub.schema.authz import check
        from lineagehub.services.access import Role

        if len(operations) > MAX_OPERATIONS:
            raise ValidationError(
                f"a batch holds at most {MAX_OPERATIONS} operations, got {len(operations)}",
                field="operations",
            )
        fields = _fields(info.schema)
        for index, op in enumerate(operations):
            if op.call not in fields:
                message = f"{op.call!r} cannot be batched: one of {', '.join(BATCHABLE)}"
                raise _fail(index, op.call, ValidationError(message, field="call"))
        ctx = info.context
        mutation = info.schema._schema.mutation_type
        assert mutation is not None  # this field is one of its fields
        definitions = mutation.fields
        converters = _converters(info.schema)
        principal = ctx.principal
        checked = principal is not None and not principal.can(Role.ADMIN, None)

        async def write() -> list[WriteResult]:
            results: list[WriteResult] = []  # afresh each time: the batch may be made again
            done: list[str | None] = []
            for index, op in enumerate(operations):
                try:
                    raw = _with_refs(_coerced(definitions[op.call], op.args), done, index)
                    if checked:
                        await ctx.call(check, ctx.services, principal, f"Mutation.{op.call}", raw)
                    field = fields[op.call]
                    kwargs = converters[op.call](raw, info)
                    answer = field.base_resolver.wrapped_func(None, info, **kwargs)
                    if inspect.isawaitable(answer):
                        answer = await answer
                except HubError as e:
                    raise _fail(index, op.call, e) from None
                node = answer if isinstance(answer, NodeInterface) else None
                promotion = answer if op.call in _PROMOTIONS else None
                results.append(WriteResult(call=op.call, node=node, promotion=promotion))
                done.append(str(node.id) if node is not None else None)
            return results

        # the whole batch in one transaction: a short one on the event loop where the store
        # allows it, else on the transaction's thread (one hand-off, not two or three a write)
        return await ctx.atomically(write, short=_short([op.args for op in operations]))
