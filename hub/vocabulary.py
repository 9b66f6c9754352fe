"""The lineage vocabulary: what the hub's nodes and edges mean, as validated pydantic models.

The graph layer (:mod:`lineagehub.graph`) stays generic: ids, one label, JSON properties.
This module gives those labels their meaning, after W3C PROV: a ``Run`` is an *activity*;
``DatasetVersion``, ``ModelVersion`` and ``Artifact`` are *entities*; an ``Agent`` is an
*agent*. Every node kind has a pydantic model (:class:`NodeModel` subclasses) that validates
its properties and converts to and from :class:`~lineagehub.graph.Node`::

    run = Run(name="fit-xgb", kind=RunKind.TRAIN)           # id "run:<uuid7>"
    dsv = DatasetVersion(namespace="s3://lake", name="customers", digest="sha256:…")
    store.upsert_nodes([run.to_node(), dsv.to_node()])
    store.upsert_edges([make_edge(EdgeKind.USED, run, dsv, role=UsedRole.TRAIN)])
    from_node(store.get_node(run.node_id)) == run            # True

Edges point from the later thing to what it came from, so *upstream* is following edges
forward. :data:`EDGE_RULES` lists, per edge kind, the (source, target) labels it may join:

=================  ============================================  ====================
edge kind          source -> target                              properties
=================  ============================================  ====================
USED               Run -> DatasetVersion | ModelVersion |        role (required):
                   Artifact                                      :class:`UsedRole`; name
GENERATED_BY       DatasetVersion | ModelVersion | Artifact      name
                   -> Run
DERIVED_FROM       DatasetVersion | ModelVersion ->              columns (column-level
                   DatasetVersion | ModelVersion;                lineage)
                   ModelVersion -> Artifact (the source of a
                   custom object the model needs)
RAN_CODE           Run -> CodeCommit
RAN_IN             Run -> Environment
CHILD_OF           Run -> Run
VERSION_OF         DatasetVersion -> Dataset,
                   ModelVersion -> Model
PART_OF            Run -> Experiment, Experiment -> Project      (grouping, not lineage)
SERVES             Deployment -> ModelVersion                    valid_from (required),
                                                                 valid_to
OBSERVED           MonitoringWindow -> Deployment
ABOUT              Alert -> Deployment | ModelVersion |
                   DatasetVersion
ASSOCIATED_WITH    Run -> Agent                                  role (required):
                                                                 :class:`AssociationRole`
ATTRIBUTED_TO      DatasetVersion | Artifact | ModelVersion |
                   Model | Dataset | Project | Experiment
                   -> Agent (the owner)
=================  ============================================  ====================

:data:`LINEAGE_EDGE_KINDS` is every kind but ``PART_OF``: traversals skip grouping unless
asked. :func:`make_edge` (model objects) and :func:`link` (ids and kinds) build edges and
check them against the table; edge properties other than the ones above are refused.

Identity (re-sending the same fact must be idempotent):

=================  ==============================================  ==========================
kind               id                                              from
=================  ==============================================  ==========================
Project            ``project:<name>``                              name
Experiment         ``experiment:<project>/<name>``                 project name + name
Run                ``run:<uuid7>``                                 time-ordered, unique
Dataset            ``dataset:<namespace>/<name>``                  OpenLineage identity
DatasetVersion     ``dsv:<namespace>/<name>@sha256:<hex>``         dataset + content digest
CodeCommit         ``commit:<host>/<path>@<sha>[+<diff>|+dirty]``  repo + sha (+ diff if dirty)
Environment        ``env:<32 hex>``                                hash of python, platform,
                                                                   packages digest
Artifact           ``artifact:sha256:<hex>``                       content digest
Model              ``model:<name>``                                name
ModelVersion       ``mv:<name>/<version>``                         model name + number
Deployment         ``deployment:<uuid7>``                          time-ordered, unique
MonitoringWindow   ``window:<32 hex>``                             deployment, instance, start
                                                                   and length
Alert              ``alert:<uuid7>``                               time-ordered, unique
Agent              ``agent:<name>``                                name
=================  ==============================================  ==========================

In a leading component (a dataset's namespace, an experiment's project) ``%`` and ``/`` are
percent-encoded, so ids stay unambiguous while readable (``dataset:s3:%2F%2Flake/customers``);
a file's dataset (namespace ``file://<host>``, an absolute path as name) reads as its URI,
``dsv:file://host/data/customers.csv@sha256:...``.
A dataset version's id keeps its dataset: the same bytes registered under two datasets are two
versions (each a version *of* its dataset); the shared ``digest`` property still finds them.
A dirty working tree is a different code state from its commit, so its id carries the diff
digest. The repo part of a commit id is host and path without scheme, user or ``.git``, so
``git@github.com:org/repo.git`` and ``https://github.com/org/repo`` name the same commit.
Time-ordered ids are UUIDv7 (:func:`uuid7`): string order is creation order, also within one
millisecond in one process.

Validation is strict. Every failure is a :class:`lineagehub.graph.errors.ValidationError`
naming the field (``params.lr``, ``columns[2].dtype``) and listing every problem, from
constructors, assignments, :func:`validate` and :func:`from_node` alike (pydantic's
``model_validate`` is pydantic's own: use :func:`validate` for data that arrives as a mapping).

- Names: 1-256 characters, no control characters; surrounding whitespace is stripped.
- Digests: ``sha256:`` + 64 hex digits, lower-cased (one spelling, one id); shas lower-cased.
- Properties are JSON only: no NaN or infinities (metric *series* may hold them; they live in
  the store's series, not in properties), numpy scalars are converted, integers fit 64 bits.
  Null is a value like any other (``params={"max_depth": None}`` is kept): the stores remove
  a key only for :data:`lineagehub.graph.DELETE`.
- Unknown fields are refused (a typo is an error, not a new property).
- The fields an id is made of, and a dataset version's columns, cannot be reassigned; mutable
  facts (tags, description, stage, aliases, status, state...) can, each assignment validated.
- Datetimes must be timezone-aware. A naive one is refused rather than guessed:
  ``datetime.now()`` is local time and ``datetime.utcnow()`` is UTC, and both are naive. They
  are kept in UTC and stored as fixed-width text, so string order is time order in every
  backend (``find_nodes(order_by="started_at")``).
- Credentials never reach the graph: user info and secret-looking query parameters (token,
  signature, key...) are stripped from repo URLs, URIs, endpoints and dataset namespaces. A
  user name that is no secret is kept: ``git@`` in an ssh URL, the container in
  ``abfss://container@account...`` (part of the dataset's identity).
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import os
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pydantic
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator

from lineagehub.graph.errors import ValidationError
from lineagehub.graph.model import (
    MAX_ID_LENGTH,
    Edge,
    Node,
    check_time,
    edge_id,
    lone_surrogate,
    to_iso,
)

__all__ = [
    "EDGE_PROPS",
    "EDGE_RULES",
    "ID_PREFIXES",
    "LINEAGE_EDGE_KINDS",
    "MAX_NAME",
    "MAX_TEXT",
    "NODE_MODELS",
    "REGISTRY_RUN_KINDS",
    "Agent",
    "AgentKind",
    "Alert",
    "AlertState",
    "Artifact",
    "ArtifactKind",
    "AssociationRole",
    "CodeCommit",
    "CodeState",
    "Column",
    "Dataset",
    "DatasetFingerprint",
    "DatasetVersion",
    "Deployment",
    "DeploymentStatus",
    "EdgeKind",
    "Environment",
    "EnvironmentState",
    "Experiment",
    "Model",
    "ModelVersion",
    "MonitoringWindow",
    "NodeKind",
    "NodeModel",
    "Project",
    "Run",
    "RunKind",
    "RunStatus",
    "Severity",
    "Stage",
    "UsedRole",
    "check_alias",
    "check_key",
    "check_scalar",
    "check_text",
    "from_node",
    "id_timestamp",
    "kind_of_id",
    "link",
    "make_edge",
    "member",
    "model_version_id",
    "monitoring_window_id",
    "new_id",
    "packages_digest",
    "same_param",
    "uuid7",
    "validate",
]


# --- kinds -----------------------------------------------------------------------------------


class NodeKind(str, enum.Enum):
    """The node kinds; each value is the node's label in the graph."""

    PROJECT = "Project"
    EXPERIMENT = "Experiment"
    RUN = "Run"
    DATASET = "Dataset"
    DATASET_VERSION = "DatasetVersion"
    CODE_COMMIT = "CodeCommit"
    ENVIRONMENT = "Environment"
    ARTIFACT = "Artifact"
    MODEL = "Model"
    MODEL_VERSION = "ModelVersion"
    DEPLOYMENT = "Deployment"
    MONITORING_WINDOW = "MonitoringWindow"
    ALERT = "Alert"
    AGENT = "Agent"


class EdgeKind(str, enum.Enum):
    """The edge kinds; each value is the edge's kind (relationship type) in the graph."""

    USED = "USED"
    GENERATED_BY = "GENERATED_BY"
    DERIVED_FROM = "DERIVED_FROM"
    RAN_CODE = "RAN_CODE"
    RAN_IN = "RAN_IN"
    CHILD_OF = "CHILD_OF"
    VERSION_OF = "VERSION_OF"
    PART_OF = "PART_OF"
    SERVES = "SERVES"
    OBSERVED = "OBSERVED"
    ABOUT = "ABOUT"
    ASSOCIATED_WITH = "ASSOCIATED_WITH"
    ATTRIBUTED_TO = "ATTRIBUTED_TO"


class RunKind(str, enum.Enum):
    TRAIN = "train"
    EVALUATE = "evaluate"
    TRANSFORM = "transform"
    PROMOTE = "promote"
    DEPLOY = "deploy"
    MONITOR = "monitor"


#: The kinds of run only the registry writes: its records of stage and alias changes,
#: promotion requests and their approvals (``promote``), and of deployments (``deploy``).
#: The registry's history is read back from these runs, so tracking calls refuse to start or
#: change one and OpenLineage events to touch one.
REGISTRY_RUN_KINDS: frozenset[str] = frozenset({RunKind.PROMOTE.value, RunKind.DEPLOY.value})


class RunStatus(str, enum.Enum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class UsedRole(str, enum.Enum):
    """Why a run used an input (the ``role`` of a ``USED`` edge)."""

    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"
    INPUT = "input"
    BASE_MODEL = "base-model"


class AssociationRole(str, enum.Enum):
    """What an agent did for a run (the ``role`` of an ``ASSOCIATED_WITH`` edge)."""

    LAUNCHER = "launcher"
    REQUESTER = "requester"
    APPROVER = "approver"


class AlertState(str, enum.Enum):
    """pending (the condition holds, not yet for the rule's ``for``) -> firing (notified)
    -> acknowledged (someone is on it; still open) -> resolved."""

    PENDING = "pending"
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Severity(str, enum.Enum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Stage(str, enum.Enum):
    """A model version's registry stage (MLflow's names)."""

    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"


class AgentKind(str, enum.Enum):
    USER = "user"
    SERVICE = "service"


class DeploymentStatus(str, enum.Enum):
    PENDING = "pending"
    ACTIVE = "active"
    FAILED = "failed"
    RETIRED = "retired"


class ArtifactKind(str, enum.Enum):
    MODEL = "model"
    CHECKPOINT = "checkpoint"
    REPORT = "report"
    CONFUSION_MATRIX = "confusion-matrix"
    CLASSIFICATION_REPORT = "classification-report"
    ROC_CURVE = "roc-curve"
    PR_CURVE = "pr-curve"
    FEATURE_IMPORTANCES = "feature-importances"
    SHAP_VALUES = "shap-values"
    PLOT = "plot"
    NOTEBOOK = "notebook"
    DATA = "data"
    #: the source of a user-defined class or function a model needs (``data``: name, module,
    #: qualname, kind, source)
    SOURCE_CODE = "source-code"
    OTHER = "other"


_N = NodeKind
_ENTITIES = {_N.DATASET_VERSION, _N.MODEL_VERSION, _N.ARTIFACT}
_VERSIONED = {_N.DATASET_VERSION, _N.MODEL_VERSION}

EDGE_RULES: dict[EdgeKind, set[tuple[NodeKind, NodeKind]]] = {
    EdgeKind.USED: {(_N.RUN, t) for t in _ENTITIES},
    EdgeKind.GENERATED_BY: {(s, _N.RUN) for s in _ENTITIES},
    # a model version also derives from the source of the custom objects it needs
    EdgeKind.DERIVED_FROM: {(s, t) for s in _VERSIONED for t in _VERSIONED}
    | {(_N.MODEL_VERSION, _N.ARTIFACT)},
    EdgeKind.RAN_CODE: {(_N.RUN, _N.CODE_COMMIT)},
    EdgeKind.RAN_IN: {(_N.RUN, _N.ENVIRONMENT)},
    EdgeKind.CHILD_OF: {(_N.RUN, _N.RUN)},
    EdgeKind.VERSION_OF: {(_N.DATASET_VERSION, _N.DATASET), (_N.MODEL_VERSION, _N.MODEL)},
    EdgeKind.PART_OF: {(_N.RUN, _N.EXPERIMENT), (_N.EXPERIMENT, _N.PROJECT)},
    EdgeKind.SERVES: {(_N.DEPLOYMENT, _N.MODEL_VERSION)},
    EdgeKind.OBSERVED: {(_N.MONITORING_WINDOW, _N.DEPLOYMENT)},
    EdgeKind.ABOUT: {
        (_N.ALERT, _N.DEPLOYMENT),
        (_N.ALERT, _N.MODEL_VERSION),
        (_N.ALERT, _N.DATASET_VERSION),
    },
    EdgeKind.ASSOCIATED_WITH: {(_N.RUN, _N.AGENT)},
    EdgeKind.ATTRIBUTED_TO: {
        (s, _N.AGENT) for s in (*_ENTITIES, _N.MODEL, _N.DATASET, _N.PROJECT, _N.EXPERIMENT)
    },
}
"""Allowed (source label, target label) pairs per edge kind (see the module docstring)."""

LINEAGE_EDGE_KINDS: frozenset[EdgeKind] = frozenset(EdgeKind) - {EdgeKind.PART_OF}
"""Edge kinds lineage traversals follow by default: all but the grouping edge ``PART_OF``."""

ID_PREFIXES: dict[NodeKind, str] = {
    _N.PROJECT: "project",
    _N.EXPERIMENT: "experiment",
    _N.RUN: "run",
    _N.DATASET: "dataset",
    _N.DATASET_VERSION: "dsv",
    _N.CODE_COMMIT: "commit",
    _N.ENVIRONMENT: "env",
    _N.ARTIFACT: "artifact",
    _N.MODEL: "model",
    _N.MODEL_VERSION: "mv",
    _N.DEPLOYMENT: "deployment",
    _N.MONITORING_WINDOW: "window",
    _N.ALERT: "alert",
    _N.AGENT: "agent",
}
"""The id prefix (before the first ``:``) of each node kind."""

_KIND_BY_PREFIX = {prefix: kind for kind, prefix in ID_PREFIXES.items()}


# --- errors ----------------------------------------------------------------------------------


class _FieldError(ValueError):
    """A validator's error that knows which part of its value was wrong."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


def _field_path(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker for an invalid mapping key
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _translate(owner: str, error: pydantic.ValidationError) -> ValidationError:
    problems: list[tuple[str, str]] = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        cause = (item.get("ctx") or {}).get("error")
        message = item["msg"]
        if isinstance(cause, _FieldError):
            loc += cause.path
            message = str(cause)
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        problems.append((_field_path(loc), message))
    text = "; ".join(f"{f}: {m}" if f else m for f, m in problems)
    return ValidationError(f"invalid {owner}: {text}", field=problems[0][0] or None)


class _translated:  # used as a function: ``with _translated(owner):``
    """Pydantic's validation errors become ours, naming ``owner``. (A class, not a
    generator: every model construction and assignment passes through it.)"""

    __slots__ = ("owner",)

    def __init__(self, owner: str) -> None:
        self.owner = owner

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, e: BaseException | None, _: Any) -> None:
        if kind is not None and issubclass(kind, pydantic.ValidationError):
            assert isinstance(e, pydantic.ValidationError)
            raise _translate(self.owner, e) from None


# --- value types -----------------------------------------------------------------------------

# C0 and C1 controls, and the bidirectional marks and overrides that make a name display as
# something else ("invoice\u202efdp.exe" shows as "invoiceexe.pdf").
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_KEY_RE = re.compile(r"^[A-Za-z0-9_\-./]([A-Za-z0-9_\-./ ]{0,248}[A-Za-z0-9_\-./])?\Z")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")
_SHA_RE = re.compile(r"^[0-9a-f]{7,64}\Z")
_IDENT_RE = re.compile(r"^[a-z][a-z0-9_.\-]{0,63}\Z")
_ALIAS_RE = re.compile(r"^[a-z][a-z0-9_\-]{0,63}\Z")
_MEDIA_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+\-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+\-]{0,126}\Z")
_PYTHON_RE = re.compile(r"^[0-9]+\.[0-9]+(\.[0-9]+)?[A-Za-z0-9.+\-]{0,32}\Z")
_SUFFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}\Z")
_SECRET_PARAM = re.compile(r"token|secret|passw|signature|sig$|credential|auth|key", re.I)
_INT64 = (-(2**63), 2**63 - 1)
_MAX_TEXT = 10_000
MAX_TEXT = _MAX_TEXT  # characters of a text field (a description, an error, ...)


def _text(max_length: int, what: str = "a name") -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _FieldError(f"expected {what} (a string), got {type(value).__name__}")
        value = value.strip()
        if not value:
            raise _FieldError(f"{what} must not be empty")
        if len(value) > max_length:
            raise _FieldError(f"{what} is {len(value)} characters long; the limit is {max_length}")
        if _CONTROL.search(value):
            raise _FieldError(
                f"{what} must not contain control characters, bidirectional overrides or"
                " lone surrogates"
            )
        return value

    return PlainValidator(check)


def _pattern(regex: re.Pattern[str], what: str, lower: bool = True) -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _FieldError(f"expected {what} (a string), got {type(value).__name__}")
        if lower:  # digests, shas, identifiers: one spelling, so one id
            value = value.strip().lower()
        if not regex.match(value):
            raise _FieldError(f"{value[:80]!r} is not {what}")
        return value

    return PlainValidator(check)


def _long_text(value: Any) -> str:
    if not isinstance(value, str):
        raise _FieldError(f"expected a string, got {type(value).__name__}")
    if len(value) > _MAX_TEXT:
        raise _FieldError(f"text is {len(value)} characters long; the limit is {_MAX_TEXT}")
    if "\x00" in value:
        raise _FieldError("text must not contain NUL characters")
    if lone_surrogate(value):
        raise _FieldError("text must not contain lone surrogates (it is not Unicode text)")
    return value


def numpy_scalar(value: Any) -> Any:
    """The Python number a numpy scalar (or one-element array) holds; anything else as it
    is, an array of several values too (refused then as not a number, not a ValueError from
    ``.item()``). Training code hands over ``np.float32(0.91)``, ``np.int64(3)`` all the time."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        if getattr(value, "size", 1) != 1:
            return value
        return value.item()
    return value


def _json_scalar(value: Any) -> str | bool | int | float | None:
    value = numpy_scalar(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise _FieldError(f"integer {value} does not fit in 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _FieldError(f"{value!r} is not a JSON value (no NaN or infinities)")
        return value
    if isinstance(value, str):
        return _long_text(value)
    raise _FieldError(
        f"expected a JSON scalar (string, number, boolean or null), got {type(value).__name__}"
    )


def _number(value: Any) -> float:
    value = numpy_scalar(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _FieldError(f"expected a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise _FieldError(f"{value!r} is not a JSON value (no NaN or infinities)")
    return value


def _json_value(value: Any, path: tuple[str | int, ...] = (), depth: int = 0) -> Any:
    if depth > 32:
        raise _FieldError("nested deeper than 32 levels", path)
    value = numpy_scalar(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _FieldError(f"key {k!r} is not a string", path)
            out[k] = _json_value(v, (*path, k), depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_json_value(v, (*path, i), depth + 1) for i, v in enumerate(value)]
    try:
        return _json_scalar(value)
    except _FieldError as e:
        raise _FieldError(str(e), path) from None


def _member(value: Any) -> str | bool | int | float | None:
    """A JSON scalar that is a mapping's member value (params, alert values)."""
    return _json_scalar(value)


def _json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _FieldError(f"expected a JSON object, got {type(value).__name__}")
    result: dict[str, Any] = _json_value(value)
    return result


def _aware_utc(value: datetime) -> datetime:
    try:
        return check_time(value)
    except ValidationError as e:
        raise _FieldError(e.message.removeprefix("time: ")) from None


def _secret_free_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if not _SECRET_PARAM.search(k)]
    return query if len(kept) == len(pairs) else urlencode(kept)


# Schemes whose user name is no secret: an ssh login (``git@``), an Azure storage container
# (``abfss://container@account.dfs.core.windows.net``, part of a dataset's identity).
_USER_IS_NO_SECRET = ("ssh", "git+ssh", "abfs", "abfss", "wasb", "wasbs")


def _clean_url(value: Any) -> str:
    """The URL without credentials: no password, no user name (except where it is no secret,
    see ``_USER_IS_NO_SECRET``), no query parameters whose names look secret, no fragment."""
    if not isinstance(value, str):
        raise _FieldError(f"expected a URL (a string), got {type(value).__name__}")
    value = value.strip()
    if not value or len(value) > 1024 or _CONTROL.search(value) or " " in value:
        raise _FieldError("expected a URL of 1 to 1024 characters without spaces")
    if "://" not in value:
        return value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as e:
        raise _FieldError(f"not a URL: {e}") from None
    scheme = parts.scheme.lower()
    netloc = (parts.hostname or "").lower()
    if ":" in netloc:  # IPv6
        netloc = f"[{netloc}]"
    if port is not None:
        netloc += f":{port}"
    if scheme in _USER_IS_NO_SECRET and parts.username:
        netloc = f"{parts.username}@{netloc}"
    query = _secret_free_query(parts.query)
    return urlunsplit((scheme, netloc, parts.path, query, ""))


_SCP_RE = re.compile(r"^(?:(?P<user>[A-Za-z0-9._\-]+)@)?(?P<host>[A-Za-z0-9.\-]+):(?P<path>.+)\Z")
_REPO_SCHEMES = ("http", "https", "ssh", "git", "git+ssh", "file")


def _clean_repo(value: Any) -> str:
    if not isinstance(value, str):
        raise _FieldError(f"expected a repository URL (a string), got {type(value).__name__}")
    value = value.strip()
    if "://" in value:
        scheme = value.split("://", 1)[0].lower()
        if scheme not in _REPO_SCHEMES:
            raise _FieldError(f"unsupported repository URL scheme {scheme!r}: use {_REPO_SCHEMES}")
        cleaned = _clean_url(value)
        # A repository URL needs neither query nor fragment; either may carry a token.
        return cleaned.split("?", 1)[0]
    cleaned = _clean_url(value)
    if cleaned.startswith("/"):
        return cleaned  # a local repository without a remote
    if _SCP_RE.match(cleaned) is None:
        raise _FieldError(
            f"{cleaned[:80]!r} is not a repository URL (https://host/path, ssh://host/path, "
            "user@host:path or an absolute path)"
        )
    return cleaned


def _repo_key(repo: str) -> str:
    """The part of a commit's id naming its repository: host and path, no scheme or user."""
    if repo.startswith("/"):
        host, path = "", repo
    elif "://" in repo:
        parts = urlsplit(repo)
        if parts.scheme == "file":
            host, path = "", parts.path
        else:
            host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
            path = parts.path
    else:
        m = _SCP_RE.match(repo)
        assert m is not None  # checked by _clean_repo
        host, path = m["host"].lower(), m["path"]
    path = path.rstrip("/")
    path = path.removesuffix(".git")
    return f"file://{path}" if not host else f"{host}/{path.lstrip('/')}"


def _esc(component: str) -> str:
    """Percent-encode ``%`` and ``/`` so that a leading id component cannot swallow the next
    (and a trailing ``:``, so that no escaped namespace reads as a URI's scheme)."""
    text = component.replace("%", "%25").replace("/", "%2F")
    return text[:-1] + "%3A" if text.endswith(":") else text


# A namespace that is a URI's scheme and authority (``file://host``, ``s3://bucket``).
_URI_NAMESPACE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/%]+\Z")


def _dataset_key(namespace: str, name: str) -> str:
    """``<namespace>/<name>`` in a dataset (version) id. A file's dataset, OpenLineage-named
    ``file://<host>`` + an absolute path, reads as its URI (``file://host/data/x.csv``); an
    escaped namespace never contains ``/``, so the two forms cannot meet."""
    if name.startswith("/") and _URI_NAMESPACE_RE.match(namespace):
        return namespace + name
    return f"{_esc(namespace)}/{name}"


UtcDatetime = Annotated[
    datetime,
    pydantic.AfterValidator(_aware_utc),
    PlainSerializer(to_iso, return_type=str, when_used="json"),
]
"""A timezone-aware datetime, kept in UTC, stored as fixed-width text (string order is time
order)."""

MAX_NAME = 256  # characters of a name (a run's, a model's, ...)
Name = Annotated[str, _text(MAX_NAME)]
Namespace = Annotated[str, _text(256, "a namespace"), pydantic.AfterValidator(_clean_url)]
LongName = Annotated[str, _text(512)]
Text = Annotated[str, PlainValidator(_long_text)]
Digest = Annotated[str, _pattern(_DIGEST_RE, "a digest ('sha256:' + 64 hex digits)")]
Identifier = Annotated[str, _pattern(_IDENT_RE, "an identifier (a-z, 0-9, '_', '.', '-')")]
Url = Annotated[str, PlainValidator(_clean_url)]
Key = Annotated[str, _pattern(_KEY_RE, "a key (letters, digits, '_', '-', '.', '/')", lower=False)]
Scalar = Annotated[str | bool | int | float | None, PlainValidator(_member)]
"""A JSON scalar kept as a mapping's member value: no NaN or infinities."""
Number = Annotated[float, PlainValidator(_number)]
JsonObject = Annotated[dict[str, Any], PlainValidator(_json_object)]
Count = Annotated[int, Field(strict=True, ge=0, le=_INT64[1])]
Tags = dict[Key, Annotated[str, PlainValidator(_long_text)]]

# The fields an id is made of cannot be assigned: a model keeps the id it was made with.
_IDENTITY = Field(frozen=True)


# --- time-ordered ids ------------------------------------------------------------------------

_uuid7_lock = threading.Lock()
_uuid7_last_ms = 0
_uuid7_counter = 0
_COUNTER_BITS = 42  # 12 bits of rand_a + 30 of rand_b (RFC 9562, "fixed-length counter")


def uuid7() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, a 42-bit counter, 32 random bits.

    Within one process ids are strictly increasing, even within a millisecond or when the
    clock steps back; across processes they are ordered by millisecond and kept unique by
    the random bits and the randomly seeded counter.
    """
    global _uuid7_last_ms, _uuid7_counter
    with _uuid7_lock:
        ms = time.time_ns() // 1_000_000
        if ms > _uuid7_last_ms:
            _uuid7_last_ms = ms
            # Seed with the top bit clear, leaving at least 2**41 increments in this ms.
            _uuid7_counter = int.from_bytes(os.urandom(6), "big") >> (48 - _COUNTER_BITS + 1)
        else:
            _uuid7_counter += 1
            if _uuid7_counter >= 1 << _COUNTER_BITS:
                _uuid7_last_ms += 1
                _uuid7_counter = 0
        ms, counter = _uuid7_last_ms, _uuid7_counter
    rand = int.from_bytes(os.urandom(4), "big")
    value = (
        (ms & ((1 << 48) - 1)) << 80
        | 0x7 << 76
        | (counter >> 30) << 64
        | 0b10 << 62
        | (counter & ((1 << 30) - 1)) << 32
        | rand
    )
    return uuid.UUID(int=value)


_PREFIX_RE = re.compile(r"^[a-z][a-z0-9_\-]{0,31}\Z")


def new_id(prefix: str) -> str:
    """A new time-ordered unique id, ``<prefix>:<uuid7>``; string order is creation order."""
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise ValidationError(
            f"invalid id prefix {prefix!r}: expected a-z, 0-9, '_' or '-', up to 32 characters",
            field="prefix",
        )
    return f"{prefix}:{uuid7()}"


def model_version_id(name: str, version: int | str) -> str:
    """The node id of version ``version`` of registered model ``name``: ``mv:<name>/<n>``."""
    return f"mv:{name}/{int(version)}"


def monitoring_window_id(deployment_id: str, instance: str, start: datetime, seconds: int) -> str:
    """The id of the window of ``seconds`` starting at ``start`` that serving process
    ``instance`` reports for a deployment: ``window:<32 hex>`` of a hash of the four, so a
    window reported again (a later flush, a restarted process) is the same node, never a
    second count."""
    facts = json.dumps([deployment_id, instance, to_iso(start, "start"), int(seconds)])
    return "window:" + hashlib.sha256(facts.encode()).hexdigest()[:32]


def id_timestamp(node_id: str) -> datetime | None:
    """When a time-ordered id (``run:<uuid7>``...) was made; ``None`` for other ids."""
    _, _, rest = node_id.partition(":")
    try:
        u = uuid.UUID(rest)
    except ValueError:
        return None
    if u.version != 7:
        return None
    return datetime.fromtimestamp((u.int >> 80) / 1000, tz=timezone.utc)


def kind_of_id(node_id: str) -> NodeKind | None:
    """The node kind an id belongs to, by its prefix; ``None`` if it is none of ours."""
    prefix, sep, _ = node_id.partition(":")
    return _KIND_BY_PREFIX.get(prefix) if sep else None


def packages_digest(packages: Mapping[str, str]) -> str:
    """A digest of installed packages (name -> version), independent of order and of the
    spelling of names (``Scikit_Learn`` = ``scikit-learn``, as pip normalizes them)."""
    lines = sorted(
        f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}" for name, version in packages.items()
    )
    return "sha256:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


# --- node models -----------------------------------------------------------------------------

M = TypeVar("M", bound="NodeModel")

NODE_MODELS: dict[NodeKind, type[NodeModel]] = {}
"""The model class of each node kind (filled as the classes are defined)."""


class NodeModel(BaseModel):
    """Base of the node models: strict validation, conversion to and from graph nodes.

    Every validation failure, from the constructor, an assignment, :func:`validate` or
    :meth:`from_node`, raises :class:`lineagehub.graph.errors.ValidationError` naming the field.
    """

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        allow_inf_nan=False,
    )
    node_kind: ClassVar[NodeKind]

    def __init__(self, **data: Any) -> None:
        with _translated(type(self).__name__):
            super().__init__(**data)

    def __setattr__(self, name: str, value: Any) -> None:
        with _translated(type(self).__name__):
            super().__setattr__(name, value)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "node_kind" in cls.__dict__:
            NODE_MODELS[cls.node_kind] = cls

    @property
    def node_id(self) -> str:
        """The node's id in the graph (see the module docstring for the scheme)."""
        raise NotImplementedError

    def to_node(self) -> Node:
        """The graph node: label = the kind, properties = the JSON form without the id."""
        props = self.model_dump(mode="json", exclude_none=True, exclude={"id"})
        return Node(id=self.node_id, label=self.node_kind.value, props=props)

    @classmethod
    def from_node(cls: type[M], node: Node) -> M:
        """The model of a graph node of this kind (see also :func:`from_node`)."""
        if node.label != cls.node_kind.value:
            raise ValidationError(
                f"node {node.id!r} is a {node.label}, not a {cls.node_kind.value}", field="label"
            )
        data = dict(node.props)
        if "id" in cls.model_fields:
            data["id"] = node.id
        model = validate(cls, data)
        if model.node_id != node.id:
            raise ValidationError(
                f"node {node.id!r} does not have the id its properties give: {model.node_id!r}",
                field="id",
            )
        return model

    def _check_id_length(self) -> None:
        if len(self.node_id) > MAX_ID_LENGTH:
            raise _FieldError(
                f"the id would be {len(self.node_id)} characters long; the limit is "
                f"{MAX_ID_LENGTH}: use shorter names",
                ("name",),
            )


def validate(model_cls: type[M], data: Mapping[str, Any]) -> M:
    """Validate ``data`` as ``model_cls``; failures raise our ``ValidationError``, naming the
    field (constructors do the same; this is for data that arrives as a mapping)."""
    if not isinstance(data, Mapping):
        raise ValidationError(
            f"invalid {model_cls.__name__}: expected a mapping, got {type(data).__name__}",
            field=None,
        )
    with _translated(model_cls.__name__):
        return model_cls.model_validate(dict(data))


def from_node(node: Node) -> NodeModel:
    """The model of any graph node, chosen by its label."""
    try:
        cls = NODE_MODELS[NodeKind(node.label)]
    except ValueError:
        raise ValidationError(
            f"node {node.id!r} has label {node.label!r}, which is not a node kind of the "
            f"vocabulary ({', '.join(k.value for k in NodeKind)})",
            field="label",
        ) from None
    return cls.from_node(node)


def _time_id(kind: NodeKind) -> Any:
    """The check of a time-ordered id field: ``<prefix>:`` and a uuid7 (or an imported id)."""
    prefix = ID_PREFIXES[kind]

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _FieldError(f"expected an id (a string), got {type(value).__name__}")
        head, sep, rest = value.partition(":")
        if head != prefix or not sep or not _SUFFIX_RE.match(rest):
            raise _FieldError(
                f"{value[:80]!r} is not a {kind.value} id: expected '{prefix}:' followed by "
                "up to 128 letters, digits, '.', '_' or '-'"
            )
        return value

    return PlainValidator(check)


def _id_factory(kind: NodeKind) -> Any:
    prefix = ID_PREFIXES[kind]
    return Field(default_factory=lambda: new_id(prefix), frozen=True)


RunId = Annotated[str, _time_id(NodeKind.RUN)]
DeploymentId = Annotated[str, _time_id(NodeKind.DEPLOYMENT)]
WindowId = Annotated[str, _time_id(NodeKind.MONITORING_WINDOW)]
AlertId = Annotated[str, _time_id(NodeKind.ALERT)]


def _reject(message: str, field: str) -> None:
    raise _FieldError(message, (field,))


class _Grouping(NodeModel):
    name: Annotated[Name, _IDENTITY]
    owner: Name | None = None
    description: Text | None = None
    tags: Tags = Field(default_factory=dict)


class Project(_Grouping):
    """A grouping of experiments. Id: ``project:<name>``."""

    node_kind: ClassVar[NodeKind] = NodeKind.PROJECT

    @property
    def node_id(self) -> str:
        return f"project:{self.name}"

    @pydantic.model_validator(mode="after")
    def _check(self) -> Project:
        self._check_id_length()
        return self


class Experiment(_Grouping):
    """A grouping of runs within a project. Id: ``experiment:<project>/<name>``."""

    node_kind: ClassVar[NodeKind] = NodeKind.EXPERIMENT
    project: Annotated[Name, _IDENTITY]
    facets: JsonObject | None = None  # an OpenLineage job's facets, kept as data

    @property
    def node_id(self) -> str:
        return f"experiment:{_esc(self.project)}/{self.name}"

    @pydantic.model_validator(mode="after")
    def _check(self) -> Experiment:
        self._check_id_length()
        return self


class Run(NodeModel):
    """An activity: training, evaluation, a transformation, a promotion, a deployment, a
    monitoring job. Id: ``run:<uuid7>`` (made on creation unless given)."""

    node_kind: ClassVar[NodeKind] = NodeKind.RUN
    id: RunId = _id_factory(NodeKind.RUN)
    name: Name
    kind: RunKind = RunKind.TRAIN
    status: RunStatus = RunStatus.RUNNING
    started_at: UtcDatetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    ended_at: UtcDatetime | None = None
    params: dict[Key, Scalar] = Field(default_factory=dict)
    # The last value logged per metric key (null when it was NaN or infinite: the metric
    # series keeps those faithfully, JSON properties cannot).
    metrics: dict[Key, Number | None] = Field(default_factory=dict)
    user: Name | None = None
    host: Name | None = None
    entry_point: LongName | None = None
    error: Text | None = None
    description: Text | None = None
    tags: Tags = Field(default_factory=dict)
    # Denormalized from the PART_OF and CHILD_OF edges, so runs can be filtered cheaply.
    project: Name | None = None
    experiment: Name | None = None
    parent: RunId | None = None
    # Facets an OpenLineage producer sent about the run and its job (kept as data:
    # {"run": {...}, "job": {...}}; lineagehub.services.openlineage_in)
    facets: JsonObject | None = None
    # Refreshed while the run's process is alive; a RUNNING run whose heartbeat is stale was
    # killed.
    heartbeat_at: UtcDatetime | None = None

    @property
    def node_id(self) -> str:
        return self.id

    @pydantic.model_validator(mode="after")
    def _check(self) -> Run:
        if self.ended_at is not None and self.ended_at < self.started_at:
            _reject("ended_at is before started_at", "ended_at")
        return self


class Dataset(NodeModel):
    """A named logical dataset, identified OpenLineage-style by ``(namespace, name)``.
    Id: ``dataset:<namespace>/<name>``."""

    node_kind: ClassVar[NodeKind] = NodeKind.DATASET
    namespace: Annotated[Namespace, _IDENTITY]
    name: Annotated[LongName, _IDENTITY]
    owner: Name | None = None
    description: Text | None = None
    tags: Tags = Field(default_factory=dict)
    facets: JsonObject | None = None  # OpenLineage dataset facets (dataSource...), as data
    # The newest version written (by event time) and when: what a later reader of the
    # dataset, naming no version, is taken to have read (OpenLineage ingestion)
    head_version: LongName | None = None
    head_at: UtcDatetime | None = None

    @property
    def node_id(self) -> str:
        return f"dataset:{_dataset_key(self.namespace, self.name)}"

    @pydantic.model_validator(mode="after")
    def _check(self) -> Dataset:
        self._check_id_length()
        return self


class Column(BaseModel):
    """One column of a dataset version's schema."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    name: LongName
    dtype: Annotated[str, _text(128, "a dtype")]
    nullable: bool | None = None


class DatasetVersion(NodeModel):
    """One content version of a dataset (PROV entity).
    Id: ``dsv:<namespace>/<name>@sha256:<hex>``."""

    node_kind: ClassVar[NodeKind] = NodeKind.DATASET_VERSION
    namespace: Annotated[Namespace, _IDENTITY]
    name: Annotated[LongName, _IDENTITY]
    digest: Annotated[Digest, _IDENTITY]
    uri: Url | None = None
    columns: Annotated[list[Column] | None, _IDENTITY] = None  # the schema
    row_count: Count | None = None
    profile: JsonObject | None = None
    description: Text | None = None
    tags: Tags = Field(default_factory=dict)
    facets: JsonObject | None = None  # OpenLineage facets of the write, as data
    #: Its project (that of the run that first generated it), recorded when that run is
    #: (:func:`lineagehub.services.access.projects_of` is the authority)
    project: Name | None = None

    @property
    def node_id(self) -> str:
        return f"dsv:{_dataset_key(self.namespace, self.name)}@{self.digest}"

    @property
    def dataset_id(self) -> str:
        """The id of the dataset this is a version of."""
        return Dataset(namespace=self.namespace, name=self.name).node_id

    @pydantic.model_validator(mode="after")
    def _check(self) -> DatasetVersion:
        self._check_id_length()
        if self.columns is not None:
            seen: set[str] = set()
            for i, col in enumerate(self.columns):
                if col.name in seen:
                    raise _FieldError(f"column {col.name!r} appears twice", ("columns", i, "name"))
                seen.add(col.name)
        return self


class CodeCommit(NodeModel):
    """The code a run ran. Id: ``commit:<host>/<path>@<sha>``; for a dirty working tree
    ``+<first 16 hex of the diff digest>`` (or ``+dirty`` when the diff is unknown)."""

    node_kind: ClassVar[NodeKind] = NodeKind.CODE_COMMIT
    repo: Annotated[str, PlainValidator(_clean_repo), _IDENTITY]
    sha: Annotated[str, _pattern(_SHA_RE, "a commit sha (7 to 64 hex digits)"), _IDENTITY]
    branch: Name | None = None
    dirty: Annotated[bool, _IDENTITY] = False
    diff_digest: Annotated[Digest | None, _IDENTITY] = None

    @property
    def node_id(self) -> str:
        suffix = ""
        if self.dirty:
            suffix = "+" + (self.diff_digest[7:23] if self.diff_digest else "dirty")
        return f"commit:{_repo_key(self.repo)}@{self.sha}{suffix}"

    @pydantic.model_validator(mode="after")
    def _check(self) -> CodeCommit:
        if self.diff_digest is not None and not self.dirty:
            _reject("a diff digest is only for a dirty working tree (dirty=True)", "diff_digest")
        self._check_id_length()
        return self


class Environment(NodeModel):
    """Where a run ran. Id: ``env:`` + 32 hex of a hash of python, platform and the packages
    digest. ``packages`` (name -> version) is optional; :func:`packages_digest` computes a
    digest of it."""

    node_kind: ClassVar[NodeKind] = NodeKind.ENVIRONMENT
    python: Annotated[
        str, _pattern(_PYTHON_RE, "a Python version (e.g. 3.11.7)", lower=False), _IDENTITY
    ]
    platform: Annotated[Name, _IDENTITY]
    packages_digest: Annotated[Digest, _IDENTITY]
    packages: dict[Annotated[str, _text(256)], Annotated[str, _text(128)]] | None = None

    @property
    def node_id(self) -> str:
        facts = json.dumps([self.python, self.platform, self.packages_digest])
        return "env:" + hashlib.sha256(facts.encode()).hexdigest()[:32]


class Artifact(NodeModel):
    """A content-addressed file (PROV entity): a model file, a report, a confusion matrix...
    Id: ``artifact:sha256:<hex>``."""

    node_kind: ClassVar[NodeKind] = NodeKind.ARTIFACT
    digest: Annotated[Digest, _IDENTITY]
    size: Count
    media_type: Annotated[str, _pattern(_MEDIA_RE, "a media type (type/subtype)")] = (
        "application/octet-stream"
    )
    kind: ArtifactKind = ArtifactKind.OTHER
    # Evaluation results (a confusion matrix, a classification report, curves, importances)
    # are kept here as data as well, so they can be queried, not only downloaded.
    data: JsonObject | None = None

    @property
    def node_id(self) -> str:
        return f"artifact:{self.digest}"


def _no_at(value: str) -> str:
    if "@" in value:
        raise _FieldError("a model name must not contain '@' (it starts an alias in references)")
    return value


ModelName = Annotated[str, _text(256), pydantic.AfterValidator(_no_at)]


class Model(NodeModel):
    """A registered model. Id: ``model:<name>``."""

    node_kind: ClassVar[NodeKind] = NodeKind.MODEL
    name: Annotated[ModelName, _IDENTITY]
    owner: Name | None = None
    description: Text | None = None
    task: Name | None = None  # e.g. binary-classification, regression, ranking
    tags: Tags = Field(default_factory=dict)
    #: Its project, recorded when it is created (:func:`lineagehub.services.access.projects_of`
    #: is the authority; listings filter by this copy)
    project: Name | None = None

    @property
    def node_id(self) -> str:
        return f"model:{self.name}"


_NOT_AN_ALIAS = "an alias (a-z, 0-9, '_', '-')"
_LATEST_RESERVED = "'latest' is reserved (it names the highest version)"


def _aliases(value: list[str]) -> list[str]:
    for i, alias in enumerate(value):
        if alias == "latest":
            raise _FieldError(_LATEST_RESERVED, (i,))
    return sorted(set(value))


class ModelVersion(NodeModel):
    """A version of a registered model (PROV entity). Id: ``mv:<model>/<version>``."""

    node_kind: ClassVar[NodeKind] = NodeKind.MODEL_VERSION
    model: Annotated[ModelName, _IDENTITY]
    version: Annotated[int, Field(strict=True, ge=1, le=_INT64[1]), _IDENTITY]
    artifact_digest: Annotated[Digest, _IDENTITY]
    flavor: Identifier | None = None
    signature: JsonObject | None = None
    #: How to load it back (:mod:`lineagehub.ingest.flavors`): the flavor's own metadata,
    #: the layout, the training environment and the custom objects it needs
    metadata: JsonObject | None = None
    metrics: dict[Key, Number] = Field(default_factory=dict)
    stage: Stage = Stage.NONE
    aliases: Annotated[
        list[Annotated[str, _pattern(_ALIAS_RE, _NOT_AN_ALIAS)]],
        pydantic.AfterValidator(_aliases),
    ] = Field(default_factory=list)
    description: Text | None = None
    tags: Tags = Field(default_factory=dict)
    #: The model card's revisions, oldest first (:mod:`lineagehub.services.cards`).
    card: JsonObject | None = None
    #: Its project, recorded when it is created (:func:`lineagehub.services.access.projects_of`
    #: is the authority; listings filter by this copy)
    project: Name | None = None

    @property
    def node_id(self) -> str:
        return model_version_id(self.model, self.version)

    @property
    def model_id(self) -> str:
        """The id of the registered model this is a version of."""
        return f"model:{self.model}"


class Deployment(NodeModel):
    """A model served somewhere (what it serves is on its ``SERVES`` edges).
    Id: ``deployment:<uuid7>``."""

    node_kind: ClassVar[NodeKind] = NodeKind.DEPLOYMENT
    id: DeploymentId = _id_factory(NodeKind.DEPLOYMENT)
    name: Name | None = None
    environment: Name
    endpoint: Url | None = None
    status: DeploymentStatus = DeploymentStatus.PENDING
    #: The stage its version must be in (``deploy(require_stage=...)``): the registry keeps
    #: it so (a stage change that would break it is refused, or retires or re-points it).
    require_stage: Stage | None = None
    tags: Tags = Field(default_factory=dict)
    #: Its project, recorded when it is created (:func:`lineagehub.services.access.projects_of`
    #: is the authority; listings filter by this copy)
    project: Name | None = None

    @property
    def node_id(self) -> str:
        return self.id


class MonitoringWindow(NodeModel):
    """Online metrics and feature statistics of a deployment over ``[start, end)``, as one
    serving process (``instance``) saw them. Id: ``window:<32 hex>``
    (:func:`monitoring_window_id`), or a ``window:<uuid7>`` made on creation.

    ``feature_stats`` holds the window's sketch (counts on the reference's bins, missing
    values, category counts, latency and label counters: see
    :mod:`lineagehub.services.monitoring`); ``drift`` and ``performance`` what the hub computed
    from it against ``reference`` (a dataset version id) and the served version's evaluation
    metrics; ``metrics`` the headline numbers (``sample_count``, ``drift.<feature>.psi``,
    ``accuracy``...) that alert rules and ``/metrics`` read."""

    node_kind: ClassVar[NodeKind] = NodeKind.MONITORING_WINDOW
    id: WindowId = _id_factory(NodeKind.MONITORING_WINDOW)
    start: UtcDatetime
    end: UtcDatetime
    sample_count: Count | None = None
    metrics: dict[Key, Number] = Field(default_factory=dict)
    feature_stats: JsonObject = Field(default_factory=dict)
    # Denormalized from the OBSERVED edge, so a deployment's windows are one indexed listing.
    deployment: DeploymentId | None = None
    instance: Name | None = None
    model_version: Name | None = None
    reference: LongName | None = None
    drift: JsonObject | None = None
    performance: JsonObject | None = None

    @property
    def node_id(self) -> str:
        return self.id

    @pydantic.model_validator(mode="after")
    def _check(self) -> MonitoringWindow:
        if self.end <= self.start:
            _reject("end must be after start", "end")
        return self


class Alert(NodeModel):
    """A monitoring rule that fired (one node per firing: a later firing of the same rule on
    the same deployment is another node with the same ``fingerprint``). Id: ``alert:<uuid7>``.

    ``source`` is ``rule`` (a hub alert rule) or ``alertmanager`` (received from a
    Prometheus Alertmanager); ``active_since`` is when the condition started to hold,
    ``last_true_at`` when it last held (``keep_firing_for`` counts from there)."""

    node_kind: ClassVar[NodeKind] = NodeKind.ALERT
    id: AlertId = _id_factory(NodeKind.ALERT)
    rule: Name
    severity: Severity = Severity.WARNING
    state: AlertState = AlertState.FIRING
    values: dict[Key, Scalar] = Field(default_factory=dict)
    message: Text | None = None
    fired_at: UtcDatetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    resolved_at: UtcDatetime | None = None
    fingerprint: Annotated[str, _text(64, "a fingerprint")] | None = None
    source: Identifier | None = None
    deployment: DeploymentId | None = None
    model_version: Name | None = None
    labels: dict[Key, Annotated[str, PlainValidator(_long_text)]] = Field(default_factory=dict)
    annotations: dict[Key, Annotated[str, PlainValidator(_long_text)]] = Field(default_factory=dict)
    active_since: UtcDatetime | None = None
    last_true_at: UtcDatetime | None = None
    acknowledged_by: Name | None = None
    acknowledged_at: UtcDatetime | None = None
    silenced_until: UtcDatetime | None = None
    #: Its project, recorded when it is created (:func:`lineagehub.services.access.projects_of`
    #: is the authority; listings filter by this copy)
    project: Name | None = None

    @property
    def node_id(self) -> str:
        return self.id

    @pydantic.model_validator(mode="after")
    def _check(self) -> Alert:
        if self.resolved_at is not None and self.resolved_at < self.fired_at:
            _reject("resolved_at is before fired_at", "resolved_at")
        return self


class Agent(NodeModel):
    """A user or a service account (PROV agent). Id: ``agent:<name>``."""

    node_kind: ClassVar[NodeKind] = NodeKind.AGENT
    name: Annotated[Name, _IDENTITY]
    kind: AgentKind = AgentKind.USER

    @property
    def node_id(self) -> str:
        return f"agent:{self.name}"


# --- edges -----------------------------------------------------------------------------------


class _EdgeProps(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    def discriminator(self) -> str:
        """What tells apart several edges of this kind between the same two nodes."""
        return ""


class _NoProps(_EdgeProps):
    pass


class _UsedProps(_EdgeProps):
    role: UsedRole
    name: LongName | None = None  # the input's name in the run (artifacts are by content)

    def discriminator(self) -> str:
        return self.role.value


class _GeneratedProps(_EdgeProps):
    name: LongName | None = None  # the output's name in the run


class _DerivedProps(_EdgeProps):
    # Column-level lineage: {output column: [{"field": input column, "transformations":
    # [...]}, ...]} (OpenLineage's columnLineage facet)
    columns: JsonObject | None = None


class _AssociatedProps(_EdgeProps):
    role: AssociationRole

    def discriminator(self) -> str:
        return self.role.value


class _ServesProps(_EdgeProps):
    valid_from: UtcDatetime
    valid_to: UtcDatetime | None = None

    def discriminator(self) -> str:
        # Serving the same version again later (a rollback) is a second interval.
        return to_iso(self.valid_from)

    @pydantic.model_validator(mode="after")
    def _check(self) -> _ServesProps:
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            _reject("valid_to must be after valid_from", "valid_to")
        return self


EDGE_PROPS: dict[EdgeKind, type[BaseModel]] = {kind: _NoProps for kind in EdgeKind}
"""The properties each edge kind takes (a pydantic model per kind; others are refused)."""
EDGE_PROPS.update(
    {
        EdgeKind.USED: _UsedProps,
        EdgeKind.GENERATED_BY: _GeneratedProps,
        EdgeKind.DERIVED_FROM: _DerivedProps,
        EdgeKind.ASSOCIATED_WITH: _AssociatedProps,
        EdgeKind.SERVES: _ServesProps,
    }
)


def _enum(enum_cls: type[enum.Enum], value: Any, field: str) -> Any:
    try:
        return enum_cls(value)
    except ValueError:
        raise ValidationError(
            f"invalid {field} {value!r}: expected one of "
            f"{', '.join(str(m.value) for m in enum_cls)}",
            field=field,
        ) from None


def link(
    kind: EdgeKind | str,
    source_id: str,
    source_kind: NodeKind | str,
    target_id: str,
    target_kind: NodeKind | str,
    *,
    event_time: datetime | None = None,
    asserted_by: str | None = None,
    **props: Any,
) -> Edge:
    """An edge ``source -> target`` of ``kind``, checked against :data:`EDGE_RULES` and the
    kind's properties (``role`` for USED and ASSOCIATED_WITH, ``valid_from``/``valid_to``
    for SERVES). The id is deterministic (:func:`~lineagehub.graph.edge_id`) with the role
    (or SERVES' ``valid_from``) as discriminator, so a run using the same data as train and
    as test has two edges, and re-sending a fact is idempotent.
    """
    edge_kind: EdgeKind = _enum(EdgeKind, kind, "kind")
    src_kind: NodeKind = _enum(NodeKind, source_kind, "source_kind")
    dst_kind: NodeKind = _enum(NodeKind, target_kind, "target_kind")
    for node_id, node_kind, field in (
        (source_id, src_kind, "source_id"),
        (target_id, dst_kind, "target_id"),
    ):
        if not isinstance(node_id, str) or kind_of_id(node_id) is not node_kind:
            raise ValidationError(
                f"{field} {node_id!r} is not the id of a {node_kind.value} (expected the "
                f"prefix '{ID_PREFIXES[node_kind]}:')",
                field=field,
            )
    if source_id == target_id:
        raise ValidationError(f"a {edge_kind.value} edge cannot join a node to itself", "target_id")
    allowed = EDGE_RULES[edge_kind]
    if (src_kind, dst_kind) not in allowed:
        sources = sorted({s.value for s, _ in allowed})
        if src_kind.value not in sources:
            raise ValidationError(
                f"a {edge_kind.value} edge cannot start at a {src_kind.value}; it starts at "
                f"{' | '.join(sources)}",
                field="source_kind",
            )
        targets = sorted(t.value for s, t in allowed if s is src_kind)
        raise ValidationError(
            f"a {edge_kind.value} edge from a {src_kind.value} cannot point to a "
            f"{dst_kind.value}; it points to {' | '.join(targets)}",
            field="target_kind",
        )
    props_cls = EDGE_PROPS[edge_kind]
    with _translated(f"{edge_kind.value} edge"):
        checked = props_cls.model_validate(props)
    assert isinstance(checked, _EdgeProps)
    if event_time is not None:
        with _translated(f"{edge_kind.value} edge"):
            event_time = _EventTime.model_validate({"event_time": event_time}).event_time
    return Edge(
        source=source_id,
        target=target_id,
        kind=edge_kind.value,
        props=checked.model_dump(mode="json", exclude_none=True),
        event_time=event_time,
        asserted_by=asserted_by,
        id=edge_id(edge_kind.value, source_id, target_id, checked.discriminator()),
    )


class _EventTime(BaseModel):
    event_time: UtcDatetime


def _endpoint(value: NodeModel | Node, field: str) -> tuple[str, NodeKind]:
    if isinstance(value, NodeModel):
        return value.node_id, value.node_kind
    if isinstance(value, Node):
        return value.id, _enum(NodeKind, value.label, f"{field}.label")
    raise ValidationError(
        f"{field} must be a vocabulary model or a graph Node, not {type(value).__name__}",
        field=field,
    )


def make_edge(
    kind: EdgeKind | str,
    source: NodeModel | Node,
    target: NodeModel | Node,
    *,
    event_time: datetime | None = None,
    asserted_by: str | None = None,
    **props: Any,
) -> Edge:
    """:func:`link` for two model objects (or graph nodes): ``make_edge(EdgeKind.USED, run,
    dataset_version, role="train")``."""
    source_id, source_kind = _endpoint(source, "source")
    target_id, target_kind = _endpoint(target, "target")
    return link(
        kind,
        source_id,
        source_kind,
        target_id,
        target_kind,
        event_time=event_time,
        asserted_by=asserted_by,
        **props,
    )


# --- single-value checks, for hot paths that cannot build a model per value ----------------

E = TypeVar("E", bound=enum.Enum)


def member(vocabulary: type[E], value: Any, field: str) -> E:
    """``value`` as a member of a closed vocabulary (``RunKind``, ``ArtifactKind``...);
    else a :class:`ValidationError` naming ``field`` and listing the allowed values."""
    try:
        return vocabulary(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in vocabulary)
        raise ValidationError(
            f"{field}: {value!r:.60} is not one of {allowed}", field=field
        ) from None


def check_key(key: Any, field: str) -> str:
    """A params / metrics / tags key, as :data:`Key` accepts it; else ValidationError."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValidationError(
            f"{field}: invalid key {key!r}: 1-250 letters, digits, '_', '-', '.', '/' or inner "
            "spaces",
            field=field,
        )
    return key


_NOT_KEY_CHAR = re.compile(r"[^A-Za-z0-9_\-./ ]")


def loggable_key(name: str) -> str | None:
    """``name`` as a key the hub takes, for names a framework makes (``valid-ndcg@3``,
    ``précision``, ``f1(macro)``): accents dropped, ``@`` as ``_at_``, other characters as
    ``_``, cut at 250; ``None`` when nothing usable is left."""
    if _KEY_RE.match(name):
        return name
    text = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    text = _NOT_KEY_CHAR.sub("_", text.replace("@", "_at_")).strip()[:250].rstrip()
    usable = _KEY_RE.match(text) and any(c.isascii() and c.isalnum() for c in text)
    return text if usable else None


def same_param(a: Any, b: Any) -> bool:
    """Whether two param values are the same JSON value: ``True``, ``1`` and ``1.0`` are
    equal in Python but not the same param (logging one over another is a conflict)."""
    return type(a) is type(b) and a == b


def check_alias(value: Any, field: str = "alias") -> str:
    """An alias as a version holds it (lower case, surrounding whitespace gone: ``Champion``
    and ``champion `` are the alias ``champion``); else ValidationError naming ``field``."""
    if not isinstance(value, str):
        raise ValidationError(
            f"{field}: expected an alias (a string), got {type(value).__name__}", field=field
        )
    alias = value.strip().lower()
    if not _ALIAS_RE.match(alias):
        raise ValidationError(f"{field}: {alias[:80]!r} is not {_NOT_AN_ALIAS}", field=field)
    if alias == "latest":
        raise ValidationError(f"{field}: {_LATEST_RESERVED}", field=field)
    return alias


def check_scalar(value: Any, field: str) -> str | bool | int | float | None:
    """A JSON scalar (a param value, an alert value): numpy scalars are unwrapped, NaN,
    infinities, oversized text and other types are refused naming ``field``."""
    try:
        return _json_scalar(value)
    except _FieldError as e:
        raise ValidationError(f"{field}: {e}", field=field) from None


def check_text(value: Any, field: str) -> str:
    """A text value (a tag): a string without NUL, at most 10,000 characters."""
    try:
        return _long_text(value)
    except _FieldError as e:
        raise ValidationError(f"{field}: {e}", field=field) from None


# --- what a client captures -----------------------------------------------------------
# Computed in the SDK (lineagehub.ingest.capture, lineagehub.ingest.datasets) and taken by the
# tracking service and the GraphQL mutations: defined here so the services never import the SDK.


@dataclass(frozen=True)
class CodeState:
    """The git state of the code a run runs.

    ``diff`` is ``None`` when the work tree is clean, and also when it is dirty but the diff
    could not be made (then ``commit.diff_digest`` is ``None`` and the commit's id ends in
    ``+dirty``). ``diff_truncated`` says that ``diff`` is not the whole change (see the
    ``# lineagehub:`` lines at its end)."""

    commit: CodeCommit
    diff: bytes | None
    toplevel: Path
    diff_truncated: bool = False


@dataclass(frozen=True)
class EnvironmentState:
    """The Python environment a run runs in. ``packages_text`` is the exact text whose
    sha256 is ``environment.packages_digest`` (``name==version`` lines, sorted), so it can be
    stored as an artifact under that digest."""

    environment: Environment
    packages_text: bytes


@dataclass(frozen=True)
class DatasetFingerprint:
    """What is recorded about a dataset: its content digest, where it is, its schema and its
    profile. ``columns`` entries have the fields of :class:`lineagehub.vocabulary.Column`."""

    digest: str
    """``"sha256:<64 hex>"``: the content identity (see the module docstring per source)."""
    source: str
    """``"file"``, ``"directory"``, ``"dataframe"``, ``"series"``, ``"ndarray"``, ``"records"``."""
    uri: str | None = None
    """Absolute ``file://`` URI of a file or directory; ``None`` for in-memory data."""
    size_bytes: int | None = None
    """Bytes hashed (files and directories)."""
    file_count: int | None = None
    """Files hashed (directories)."""
    row_count: int | None = None
    columns: list[dict[str, str]] | None = None
    """``[{"name": ..., "dtype": ...}]`` in order; ``None`` when the format has no known schema."""
    profile: dict[str, Any] | None = None
    """Per-column statistics, JSON-ready; ``None`` when not asked for or not computable."""
    format: str | None = None
    """``"csv"``, ``"tsv"``, ``"jsonl"`` (each maybe ``".gz"``), ``"parquet"``, ``"npy"``."""

    def version_fields(self) -> dict[str, Any]:
        """The :class:`~lineagehub.vocabulary.DatasetVersion` fields this fingerprint fills:
        ``DatasetVersion(namespace=..., name=..., **fp.version_fields())``."""
        columns = self.columns
        if columns is not None and (
            not isinstance(columns, (list, tuple))
            or not all(isinstance(c, Mapping) for c in columns)
        ):
            raise ValidationError(
                'columns must be a list of {"name": ..., "dtype": ...} objects', field="columns"
            )
        return {
            "digest": self.digest,
            "uri": self.uri,
            "columns": None if self.columns is None else [dict(c) for c in self.columns],
            "row_count": self.row_count,
            "profile": self.profile,
        }
