"""The error tree every layer of LineageHub raises.

::

    HubError                      .code, .retryable
    ├── NotFoundError             "NOT_FOUND"   (.ids: what could not be found)
    ├── ConflictError             "CONFLICT"    (already exists, stale state, immutable field)
    ├── ValidationError           "VALIDATION"  (.field: the offending field)
    ├── PolicyViolation           "POLICY"      (.rules: every rule broken)
    ├── PermissionDenied          "FORBIDDEN"
    ├── ConfigError               "CONFIG"      (unsupported URI lists the supported schemes)
    ├── IntegrityError            "INTEGRITY"   (stored bytes do not match their digest)
    └── BackendError              "BACKEND"
        └── BackendUnavailable    "BACKEND_UNAVAILABLE" (retryable)

Backends translate their driver's errors into these at their boundary (``raise ... from e``),
so callers never need to import ``sqlite3`` or ``neo4j`` to handle a failure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class HubError(Exception):
    """Base of every error LineageHub raises on purpose."""

    code: str = "INTERNAL"
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, as the API and the CLI's ``--json`` show it."""
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class NotFoundError(HubError):
    code = "NOT_FOUND"

    def __init__(self, message: str, ids: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.ids: list[str] = list(ids)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "ids": self.ids}


class ConflictError(HubError):
    code = "CONFLICT"


class ValidationError(HubError):
    code = "VALIDATION"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "field": self.field}


class PolicyViolation(HubError):
    code = "POLICY"

    def __init__(self, message: str, rules: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.rules = list(rules)

    def to_dict(self) -> dict[str, Any]:
        """With ``rules``: each as a JSON object (a dataclass' fields), so a client sees
        every rule broken, as the code that raised it does."""
        return {**super().to_dict(), "rules": [_plain(r) for r in self.rules]}


def _plain(rule: Any) -> Any:
    if dataclasses.is_dataclass(rule) and not isinstance(rule, type):
        return dataclasses.asdict(rule)
    return dict(rule) if isinstance(rule, Mapping) else str(rule)


class PermissionDenied(HubError):
    code = "FORBIDDEN"


class ConfigError(HubError):
    code = "CONFIG"


class IntegrityError(HubError):
    """Stored content is not what it must be: it does not match its digest (corruption or
    tampering), or a node lacks a property the vocabulary requires (written around the hub)."""

    code = "INTEGRITY"


class BackendError(HubError):
    code = "BACKEND"


class BackendUnavailable(BackendError):
    code = "BACKEND_UNAVAILABLE"
    retryable = True


__all__ = [
    "BackendError",
    "BackendUnavailable",
    "ConfigError",
    "ConflictError",
    "HubError",
    "IntegrityError",
    "NotFoundError",
    "PermissionDenied",
    "PolicyViolation",
    "ValidationError",
]
