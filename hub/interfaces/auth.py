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
``Retry-After`` (code ``RATE_LIMITED``). When the OIDC issuer's signing keys cannot be had
(:class:`SigningKeys`), an OIDC token can be told neither good nor bad: 503 with
``Retry-After`` (code ``BACKEND_UNAVAILABLE``).

Failed logins and permission denials (any ``FORBIDDEN``) are appended to the audit log
(:class:`SecurityAudit`) without secrets (a token appears by its public id), at most
:data:`AUDIT_PER_MINUTE` a minute whatever the flood; the entries left out are counted in the
next one written.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.datastructures import QueryParams
from starlette.responses import JSONResponse

from lineagehub.config import Settings
from lineagehub.graph import BackendUnavailable, ConfigError, GraphStore, HubError, ValidationError
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


#: The OIDC signing keys (the issuer's JWKS) are trusted this long after they were fetched: a
#: key the issuer removes is refused at most this many seconds later.
JWKS_LIFESPAN = 300.0
#: A token naming a key the hub has not seen fetches the JWKS again, at most this often.
JWKS_REFRESH_EVERY = 30.0
#: Seconds a fetch of the JWKS may take in all; no request waits longer for one.
JWKS_TIMEOUT = 5.0
#: After a failed fetch, no other for this long: requests needing the keys get 503 meanwhile.
JWKS_BACKOFF = 10.0
#: The largest JWKS read (bytes): real ones are a few KiB.
JWKS_MAX_BYTES = 1024 * 1024
#: Threads OIDC logins take at most, apart from the pool the other requests share.
OIDC_THREADS = 8


class SigningKeysUnavailable(BackendUnavailable):
    """The issuer's signing keys could not be fetched: 503, retry after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


class _Unusable(Exception):
    """A JWKS fetch that failed, with a reason fit for the log (no URL, no body)."""


class SigningKeys:
    """The issuer's signing keys, by ``kid``, as its JWKS last listed them.

    Fetched in a thread of its own, one fetch at a time: requests that need the keys wait
    for that one fetch, never longer than ``timeout`` from its start; the fetch itself is
    abandoned at that deadline, however the server drips its answer. Keys are kept for
    ``lifespan`` seconds, then fetched again (a key the issuer removed is then refused); an
    unknown ``kid`` fetches again at most every ``refresh_every`` seconds (a rotated-in key).
    After a failed fetch none is tried for ``backoff`` seconds, and requests needing the keys
    get :class:`SigningKeysUnavailable` at once."""

    def __init__(
        self,
        url: str,
        *,
        lifespan: float = JWKS_LIFESPAN,
        refresh_every: float = JWKS_REFRESH_EVERY,
        timeout: float = JWKS_TIMEOUT,
        backoff: float = JWKS_BACKOFF,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.url = url
        self.lifespan = lifespan
        self.refresh_every = refresh_every
        self.timeout = timeout
        self.backoff = backoff
        self.clock = clock or time.monotonic  # the keys' ages and the back-off
        self._lock = threading.Lock()
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at = -math.inf
        self._retry_at = -math.inf
        self._fetch: Future[dict[str, dict[str, Any]]] | None = None
        self._fetch_deadline = 0.0  # time.monotonic(), as the fetch's own deadline

    def get(self, kid: str) -> dict[str, Any]:
        """The JWK named ``kid``: :class:`AuthenticationError` if the JWKS has none,
        :class:`SigningKeysUnavailable` if it cannot be fetched."""
        with self._lock:
            now = self.clock()
            age = now - self._fetched_at
            if age < self.lifespan and (kid in self._keys or age < self.refresh_every):
                keys: dict[str, dict[str, Any]] | None = self._keys
            elif now < self._retry_at:
                raise SigningKeysUnavailable(
                    "the OIDC signing keys could not be fetched: retry in "
                    f"{math.ceil(self._retry_at - now)} s",
                    self._retry_at - now,
                )
            else:
                keys = None
                if self._fetch is None:  # one at a time: the others wait for it
                    self._fetch = Future()
                    self._fetch_deadline = time.monotonic() + self.timeout
                    threading.Thread(
                        target=self._run,
                        args=(self._fetch, self._fetch_deadline),
                        name="lineagehub-jwks",
                        daemon=True,
                    ).start()
                fetch, deadline = self._fetch, self._fetch_deadline
        if keys is None:
            try:
                keys = fetch.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                with self._lock:
                    if self._fetch is fetch:  # given up: whatever it brings is ignored
                        self._fetch = None
                        self._retry_at = self.clock() + self.backoff
                raise SigningKeysUnavailable(
                    f"the OIDC signing keys did not arrive within {self.timeout:g} s: retry in "
                    f"{math.ceil(self.backoff)} s",
                    self.backoff,
                ) from None
            except SigningKeysUnavailable as e:  # a new one: each request raises its own
                raise SigningKeysUnavailable(e.message, e.retry_after) from None
        jwk = keys.get(kid)
        if jwk is None:
            raise AuthenticationError(
                f"invalid OIDC token: the issuer has no signing key {kid!r:.40}", reason="invalid"
            )
        return jwk

    def _run(self, fetch: Future[dict[str, dict[str, Any]]], deadline: float) -> None:
        try:
            keys = self._download(deadline)
        except Exception as e:
            reason = str(e) if isinstance(e, _Unusable) else type(e).__name__
            log.warning(
                "could not fetch the OIDC signing keys (%s): trying again in %g s",
                reason,
                self.backoff,
            )
            with self._lock:
                if self._fetch is fetch:
                    self._retry_at = self.clock() + self.backoff
                    self._fetch = None
            fetch.set_exception(
                SigningKeysUnavailable(
                    f"the OIDC signing keys could not be fetched ({reason}): retry in "
                    f"{math.ceil(self.backoff)} s",
                    self.backoff,
                )
            )
            return
        with self._lock:
            if self._fetch is fetch:
                self._keys, self._fetched_at = keys, self.clock()
                self._retry_at, self._fetch = -math.inf, None
        fetch.set_result(keys)

    def _download(self, deadline: float) -> dict[str, dict[str, Any]]:
        import httpx

        body = bytearray()
        try:
            with httpx.stream("GET", self.url, timeout=self.timeout) as response:
                if response.status_code != 200:
                    raise _Unusable(f"HTTP {response.status_code}")
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > JWKS_MAX_BYTES:
                        raise _Unusable(f"over {JWKS_MAX_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise _Unusable(f"not all there after {self.timeout:g} s")
        except httpx.TimeoutException:
            raise _Unusable(f"no answer within {self.timeout:g} s") from None
        except httpx.HTTPError as e:
            raise _Unusable(type(e).__name__) from None
        try:
            data = json.loads(body)
        except ValueError:
            raise _Unusable("not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise _Unusable("not a JWK set")
        keys: dict[str, dict[str, Any]] = {}
        for jwk in data["keys"]:
            if (
                isinstance(jwk, dict)
                and isinstance(jwk.get("kid"), str)
                and jwk.get("use") in (None, "sig")
                and isinstance(jwk.get("alg", ""), str)
            ):
                keys.setdefault(jwk["kid"], jwk)
        return keys


class OidcVerifier:
    """Verifies OIDC bearer JWTs: signature (a key of the JWKS, by ``kid``: see
    :class:`SigningKeys`), expiry, issuer and audience; the user is the configured claim
    (default ``preferred_username``, else ``sub``), as given: one that is no user name the hub
    can have (:func:`check_name`: spaces, control characters, too long) is refused, never
    trimmed into one."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks_url: str,
        username_claim: str | None,
        keys: SigningKeys | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.username_claim = username_claim
        self.keys = keys or SigningKeys(jwks_url)

    def username(self, credential: str) -> str:
        """The user a bearer JWT names: :class:`AuthenticationError` for a bad token,
        :class:`SigningKeysUnavailable` when the keys cannot be had to tell."""
        import jwt

        try:
            header = jwt.get_unverified_header(credential)
        except jwt.PyJWTError as e:
            raise AuthenticationError(f"invalid OIDC token: {e}", reason="invalid") from None
        kid, alg = header.get("kid"), header.get("alg")
        if not isinstance(kid, str) or alg not in JWT_ALGORITHMS:
            raise AuthenticationError(
                "invalid OIDC token: it must name its signing key (kid) and an asymmetric "
                "algorithm",
                reason="invalid",
            )
        jwk = self.keys.get(kid)
        try:
            # a key declaring its algorithm takes only that one; one that does not, any
            # algorithm for its type (PyJWK refuses an EC key for RS256, and so on)
            key = jwt.PyJWK(jwk, None if "alg" in jwk else alg)
        except (jwt.PyJWTError, TypeError, ValueError):
            raise AuthenticationError(
                f"invalid OIDC token: the signing key {kid!r:.40} is not one for {alg}",
                reason="invalid",
            ) from None
        if key.algorithm_name != alg:
            raise AuthenticationError(
                f"invalid OIDC token: signed with {alg}, but its key {kid!r:.40} is for "
                f"{key.algorithm_name:.20}",
                reason="invalid",
            )
        try:
            claims = jwt.decode(
                credential,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud"]},
                leeway=30,
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("the OIDC token has expired", reason="expired") from None
        except jwt.PyJWTError as e:
            # PyJWT's messages name the failed check (audience, issuer, signature), not the token
            raise AuthenticationError(f"invalid OIDC token: {e}", reason="invalid") from None
        for claim in ("exp", "nbf", "iat"):
            # a NumericDate (RFC 7519): PyJWT checks int() of it, so a text "exp":
            # "99999999999" made a token that never expired
            value = claims.get(claim)
            if claim in claims and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise AuthenticationError(
                    f"invalid OIDC token: its {claim} claim must be a number of seconds, "
                    f"not {value!r:.40}",
                    reason="invalid",
                )
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

    def checks_oidc(self, header: str | None) -> bool:
        """Whether :meth:`authenticate` would check ``header`` against the OIDC issuer's keys
        (and may wait for them)."""
        credential = (header or "").strip().partition(" ")[2].strip()
        return (
            self.oidc is not None and bool(credential) and not credential.startswith(TOKEN_PREFIX)
        )


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
        self._oidc_threads: list[anyio.CapacityLimiter] = []  # made in the event loop

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
            # OIDC logins in threads of their own: those waiting for the issuer's keys must
            # not fill the pool every other request works in
            threads = None
            if self.authenticator.checks_oidc(header):
                if not self._oidc_threads:
                    self._oidc_threads.append(anyio.CapacityLimiter(OIDC_THREADS))
                threads = self._oidc_threads[0]
            try:
                found = await anyio.to_thread.run_sync(
                    self.authenticator.authenticate, header, limiter=threads
                )
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
            except HubError as e:  # the store failed while checking, or the issuer's keys
                status = 503 if e.retryable else 500
                retry = getattr(e, "retry_after", None)
                headers = {"retry-after": str(retry)} if retry is not None else {}
                await _refusal(status, e.message, e.code, headers)(scope, receive, send)
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
    "SigningKeys",
    "SigningKeysUnavailable",
    "check_serve",
    "is_loopback",
]
