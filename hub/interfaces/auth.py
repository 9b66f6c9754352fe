"""Who is calling the server: bearer credentials, the principal, rate limits, and the audit
trail of refusals.

``LINEAGEHUB_AUTH`` chooses the methods: ``tokens`` (API tokens of
:mod:`lineagehub.services.identity`), ``oidc`` (JWTs verified with PyJWT against the
issuer's JWKS, with the configured issuer and audience) or both; ``none`` serves every
caller as the configured user, with every right (for a loopback address only: see
:func:`check_serve`).

:class:`AuthMiddleware` reads ``Authorization: Bearer <credential>`` on every route but
``/health`` and the pages' files (:data:`OPEN_PATHS`, :data:`OPEN_PREFIXES`) and puts the caller on ``request.state.principal``. A missing, malformed,
unknown, expired or revoked credential, or a disabled user, gets 401 with
``WWW-Authenticate: Bearer`` and the error shaped as GraphQL errors are (code
``UNAUTHENTICATED``); a caller over ``LINEAGEHUB_RATE_LIMIT`` requests a minute gets 429 with
``Retry-After`` (code ``RATE_LIMITED``).

Failed logins and permission denials (any ``FORBIDDEN``) are appended to the audit log
(:class:`SecurityAudit`) without secrets (a token appears by its public id), at most
:data:`AUDIT_PER_MINUTE` a minute whatever the flood; the entries left out are counted in the
next one written.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.datastructures import QueryParams
from starlette.responses import JSONResponse

from lineagehub.config import Settings
from lineagehub.graph import ConfigError, GraphStore, HubError, ValidationError
from lineagehub.services.access import Principal
from lineagehub.services.identity import (
    TOKEN_PREFIX,
    AuthenticationError,
    IdentityService,
    check_name,
)

log = logging.getLogger("lineagehub.auth")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Routes anyone may call: the health check, and the pages and files of GraphiQL and the
#: explorer (the package's own files, no data: their calls to /graphql carry the token).
OPEN_PATHS = frozenset({"/health", "/"})
OPEN_PREFIXES = ("/graphiql/", "/explorer/")
#: Refusals (failed logins, denials) written to the audit log per minute, at most.
AUDIT_PER_MINUTE = 30
#: The signature algorithms accepted for OIDC tokens (asymmetric only: never "none" or HS*).
JWT_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]
ANONYMOUS = "anonymous"


def _refusal(status: int, message: str, code: str, headers: dict[str, str]) -> JSONResponse:
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    return JSONResponse(body, status_code=status, headers=headers)


# --------------------------------------------------------------------------- audit of refusals


class SecurityAudit:
    """Appends failed logins and permission denials to the audit log, off the event loop and
    throttled: at most ``per_minute`` entries in any minute; the ones dropped are counted in
    the next entry's payload (``suppressed``) and logged."""

    def __init__(
        self,
        store: GraphStore,
        per_minute: int = AUDIT_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.per_minute = per_minute
        self.clock = clock
        self._times: deque[float] = deque()
        self._suppressed = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lineagehub-audit")

    def record(self, actor: str, action: str, target: str, payload: dict[str, Any]) -> bool:
        """Queue one entry; ``False`` when the throttle left it out."""
        now = self.clock()
        with self._lock:
            while self._times and now - self._times[0] >= 60.0:
                self._times.popleft()
            if len(self._times) >= self.per_minute:
                self._suppressed += 1
                return False
            self._times.append(now)
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            payload = {**payload, "suppressed": suppressed}
        self._pool.submit(self._write, actor[:512] or ANONYMOUS, action, target[:512], payload)
        return True

    def _write(self, actor: str, action: str, target: str, payload: dict[str, Any]) -> None:
        try:
            self.store.append_audit(actor, action, target or "-", payload)
        except Exception as e:  # the refusal stands; only its record is lost
            log.warning("could not record %s in the audit log: %s", action, type(e).__name__)

    def flush(self) -> None:
        """Wait until every queued entry is written."""
        done: Future[None] = self._pool.submit(lambda: None)
        done.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def denied(self, principal: Principal | None, where: str, message: str) -> None:
        """A permission denial (code FORBIDDEN) of ``principal`` at ``where``."""
        name = principal.name if principal is not None else ANONYMOUS
        via = principal.via if principal is not None else "open"
        self.record(name, "access.denied", where, {"message": message[:500], "via": via})


# --------------------------------------------------------------------------- rate limits


class RateLimiter:
    """A sliding one-minute window of requests per key (principal or token)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> float | None:
        """``None`` if ``key`` may make a request now (and counts it), else the seconds until
        it may."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and now - hits[0] >= 60.0:
                hits.popleft()
            if len(hits) >= self.per_minute:
                return 60.0 - (now - hits[0])
            hits.append(now)
            if len(self._hits) > 10_000:  # forget idle keys
                for k in [k for k, v in self._hits.items() if not v or now - v[-1] >= 60.0]:
                    del self._hits[k]
            return None


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Authenticated:
    principal: Principal
    #: what the rate limit counts: ``token:<id>`` or ``oidc:<name>``
    key: str


class OidcVerifier:
    """Verifies OIDC bearer JWTs: signature (a key of the JWKS, by ``kid``), expiry, issuer
    and audience; the user is the configured claim (default ``preferred_username``, else
    ``sub``), as given: one that is no user name the hub can have (:func:`check_name`:
    spaces, control characters, too long) is refused, never trimmed into one."""

    def __init__(
        self, issuer: str, audience: str, jwks_url: str, username_claim: str | None
    ) -> None:
        import jwt

        self.issuer = issuer
        self.audience = audience
        self.username_claim = username_claim
        self.jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=10)

    def username(self, credential: str) -> str:
        import jwt

        try:
            key = self.jwks.get_signing_key_from_jwt(credential)
            claims = jwt.decode(
                credential,
                key.key,
                algorithms=JWT_ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud"]},
                leeway=30,
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("the OIDC token has expired", reason="expired") from None
        except jwt.PyJWKClientConnectionError:
            raise AuthenticationError(
                "the OIDC signing keys could not be fetched", reason="jwks"
            ) from None
        except jwt.PyJWTError as e:
            # PyJWT's messages name the failed check (audience, issuer, signature), not the token
            raise AuthenticationError(f"invalid OIDC token: {e}", reason="invalid") from None
        claims_tried = (
            [self.username_claim] if self.username_claim else ["preferred_username", "sub"]
        )
        for claim in claims_tried:
            value = claims.get(claim)
            if not isinstance(value, str) or not value:
                continue
            try:
                # as given, never trimmed: " alice " or "alice\n" is not alice
                return check_name(value)
            except ValidationError:
                raise AuthenticationError(
                    f"the OIDC token's {claim} claim is not a user name the hub can have "
                    f"(letters, digits and ._@+-, up to 128): {value!r:.40}",
                    reason="invalid",
                ) from None
        raise AuthenticationError(
            f"the OIDC token has no {' or '.join(claims_tried)} claim", reason="invalid"
        )


class Authenticator:
    """Turns an ``Authorization`` header into a principal (synchronous: store reads, JWKS)."""

    def __init__(self, settings: Settings, store: GraphStore) -> None:
        self.methods = settings.auth_methods()
        self.identity = IdentityService(store)
        self.oidc: OidcVerifier | None = None
        if "oidc" in self.methods:
            assert settings.oidc_issuer and settings.oidc_audience and settings.oidc_jwks_url
            self.oidc = OidcVerifier(
                settings.oidc_issuer,
                settings.oidc_audience,
                settings.oidc_jwks_url,
                settings.oidc_username_claim,
            )

    def authenticate(self, header: str | None) -> Authenticated:
        if not header:
            raise AuthenticationError(
                "authentication required: send Authorization: Bearer <token>", reason="missing"
            )
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise AuthenticationError(
                "send the credential as Authorization: Bearer <token>", reason="malformed"
            )
        if credential.startswith(TOKEN_PREFIX):
            if "tokens" not in self.methods:
                raise AuthenticationError("this hub does not accept API tokens", reason="method")
            principal, token = self.identity.authenticate(credential)
            return Authenticated(principal, f"token:{token.id}")
        if self.oidc is None:
            raise AuthenticationError(
                "not an API token (they start with lh_)"
                if "oidc" not in self.methods
                else "invalid OIDC token",
                reason="malformed",
            )
        name = self.oidc.username(credential)
        return Authenticated(self.identity.principal(name, via="oidc"), f"oidc:{name}")


# --------------------------------------------------------------------------- the middleware


class AuthMiddleware:
    """ASGI middleware: authentication (when configured), the rate limit, and the audit of
    failed logins and of routes answering 403."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator | None,
        audit: SecurityAudit,
        rate_limit: int = 0,
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.audit = audit
        self.limiter = RateLimiter(rate_limit) if rate_limit > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.authenticator is not None:
            await send({"type": "websocket.close", "code": 1008})  # no route takes them
            return
        if scope["type"] != "http" or _open(str(scope.get("path", ""))):
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        principal: Principal | None = None
        key = f"client:{(scope.get('client') or ('?',))[0]}"
        if self.authenticator is not None and not _graphiql_page(scope):
            headers = dict(scope.get("headers") or [])
            header = headers.get(b"authorization", b"").decode("latin-1")
            try:
                found = await anyio.to_thread.run_sync(self.authenticator.authenticate, header)
            except AuthenticationError as e:
                if e.reason != "missing":
                    self.audit.record(
                        ANONYMOUS,
                        "auth.failed",
                        f"token:{e.token_id}" if e.token_id else path,
                        {"reason": e.reason, "path": path[:200], "client": key[7:]},
                    )
                await _refusal(
                    401,
                    e.message,
                    "UNAUTHENTICATED",
                    {"www-authenticate": 'Bearer realm="lineagehub"'},
                )(scope, receive, send)
                return
            except HubError as e:  # the store failed while checking
                status = 503 if e.retryable else 500
                await _refusal(status, e.message, e.code, {})(scope, receive, send)
                return
            principal, key = found.principal, found.key
            scope.setdefault("state", {})["principal"] = principal
            if not principal.grants:
                # known who, but granted nothing (an OIDC user the hub has no grants for)
                message = f"{principal.name!r} holds no role on this hub: ask an admin for one"
                self.audit.denied(principal, f"{scope.get('method', '')} {path}"[:512], message)
                await _refusal(403, message, "FORBIDDEN", {})(scope, receive, send)
                return
        if self.limiter is not None:
            wait = self.limiter.check(key)
            if wait is not None:
                seconds = max(1, math.ceil(wait))
                await _refusal(
                    429,
                    f"over {self.limiter.per_minute} requests a minute: retry in {seconds} s",
                    "RATE_LIMITED",
                    {"retry-after": str(seconds)},
                )(scope, receive, send)
                return
        if path.startswith(_SELF_AUDITED):  # their denials are recorded where they are made
            await self.app(scope, receive, send)
            return

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start" and message.get("status") == 403:
                self.audit.denied(principal, f"{scope.get('method', '')} {path}"[:512], "403")
            await send(message)

        await self.app(scope, receive, watched)


#: Routes that record their own denials, with what was refused (the schema's for GraphQL; the
#: OpenLineage route's): recording their 403 again would write each denial twice.
_SELF_AUDITED = ("/graphql", "/api/v1/lineage")


def _open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def _graphiql_page(scope: Scope) -> bool:
    """A browser asking for the GraphiQL page (no query): it holds no data, and its queries
    carry the header the user sets in it."""
    if scope.get("method") != "GET" or scope.get("path") != "/graphql":
        return False
    # read as the GraphQL view reads it (decoded: '%71uery=' is a query), and any parameter
    # at all is no page: the page is what is served for none of them
    if QueryParams(scope.get("query_string") or b""):
        return False
    accept = dict(scope.get("headers") or []).get(b"accept", b"")
    return b"text/html" in accept


# --------------------------------------------------------------------------- serve


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name) is reachable from this machine only."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_serve(host: str, settings: Settings) -> str | None:
    """Before ``lineagehub serve``: a :class:`ConfigError` for a non-loopback address without
    authentication; otherwise a line to print when the hub is open (``None`` when not)."""
    methods = settings.auth_methods()
    if methods:
        return None
    if not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host} without authentication: anyone who can reach it "
            "could read and change the hub. Set LINEAGEHUB_AUTH=tokens (and create a user and "
            "a token with `lineagehub user add` and `lineagehub token create`), or serve on "
            "127.0.0.1"
        )
    who = settings.user or "the OS user"
    return (
        f"authentication is off (LINEAGEHUB_AUTH=none): every local caller acts as {who}, "
        "with every right"
    )


__all__ = [
    "AuthMiddleware",
    "Authenticator",
    "OidcVerifier",
    "RateLimiter",
    "SecurityAudit",
    "check_serve",
    "is_loopback",
]
