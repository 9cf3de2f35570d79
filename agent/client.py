"""The one HTTP client the agent uses to talk to the hub: timeouts, signatures, errors, retries.

Every request has a connect and a read timeout, is signed with the agent's key (agent.reqsign), and
maps transport and HTTP failures into the error tree at this seam (nothing above it sees a
``requests`` exception). Proxies are explicit: the session ignores the environment's proxy settings,
because a service that silently inherits ``https_proxy`` from some shell is the classic
"works in my terminal, fails under systemd" trap on front-end machines.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import urlencode, urlsplit

import requests

from . import __version__
from .errors import (
    AgentError, AuthError, BatchSuperseded, EnrolmentError, HubBusy, HubProtocolError, HubUnreachable, NotFound,
    PlatformError, is_transient,
)

USER_AGENT = f"edx-agent/{__version__}"


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter, honouring Retry-After; immutable, safe defaults."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 300.0
    # a longer Retry-After is not slept through inside a request: the error goes up with its retry_after,
    # and the daemon reschedules that dataset, so one busy answer never holds the single sync worker
    max_inline_wait: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None,
              rand: Callable[[], float] = random.random) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return rand() * min(self.cap, self.base * (2 ** attempt))

    def run(self, fn: Callable[[], Any], sleep: Callable[[float], None] = time.sleep) -> Any:
        """Call ``fn`` until it succeeds, a terminal error, or attempts run out."""
        for attempt in range(self.attempts):
            try:
                return fn()
            except AgentError as e:
                if not is_transient(e) or not getattr(e, "retry_inline", True) or attempt == self.attempts - 1:
                    raise
                wait = self.delay(attempt, getattr(e, "retry_after", None))
                if wait > self.max_inline_wait:
                    raise
                sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


NO_RETRY = RetryPolicy(attempts=1)


def _error_from_response(resp: requests.Response) -> AgentError:
    try:
        body = resp.json()
        err = body.get("error", body.get("detail", {})) if isinstance(body, dict) else {}
        if not isinstance(err, dict):
            err = {"message": str(err)}
    except ValueError:
        err = {"message": resp.text[:200]}
    code = err.get("code", "")
    text = f"HTTP {resp.status_code} {code}: {err.get('message', '')}".strip()
    if resp.status_code in (429, 503):
        e: AgentError = HubBusy(text)
        ra = resp.headers.get("Retry-After")
        try:
            e.retry_after = float(ra) if ra is not None else None  # type: ignore[attr-defined]
        except ValueError:
            e.retry_after = None  # type: ignore[attr-defined]
        return e
    if code.startswith("enrolment-"):
        return EnrolmentError(text)
    if resp.status_code in (401, 403):
        return AuthError(text)
    if resp.status_code == 404:
        return NotFound(text)
    if resp.status_code == 410:
        return BatchSuperseded(text)
    if resp.status_code >= 500:
        e = HubBusy(text)
        e.retry_after = None  # type: ignore[attr-defined]
        return e
    return HubProtocolError(text)


class HubClient:
    """Signed, timed requests to the hub's agent API (docs/protocol.md)."""

    def __init__(self, base_url: str, *, ca_file: str = "", connect_timeout: float = 10.0,
                 read_timeout: float = 60.0, proxy: str = "", no_proxy: list[str] | None = None,
                 agent_id: str | None = None, keys: Any = None,
                 retry: RetryPolicy = RetryPolicy()) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.agent_id = agent_id
        self.keys = keys
        self.retry = retry
        s = requests.Session()
        s.trust_env = False
        s.headers["User-Agent"] = USER_AGENT
        host = urlsplit(self.base_url).hostname or ""
        if proxy and host not in (no_proxy or []):
            s.proxies = {"http": proxy, "https": proxy}
        s.verify = ca_file or True
        self.session = s

    @classmethod
    def from_config(cls, cfg: Any, *, agent_id: str | None = None, keys: Any = None,
                    base_url: str | None = None, retry: RetryPolicy = RetryPolicy()) -> "HubClient":
        h = cfg.hub
        proxy = h.proxy
        if proxy and h.proxy_password_file:
            # the proxy password lives in a credential file, like the database's, never in the config
            import os
            from urllib.parse import quote, urlsplit as split

            pw = cfg.path(os.path.expandvars(h.proxy_password_file)).read_text(encoding="utf-8").strip()
            p = split(proxy)
            user = quote(p.username or "", safe="")
            host = p.hostname + (f":{p.port}" if p.port else "")
            proxy = f"{p.scheme}://{user}:{quote(pw, safe='')}@{host}"
        return cls(base_url or h.url, ca_file=str(cfg.path(h.ca_file)) if h.ca_file else "",
                   connect_timeout=h.connect_timeout, read_timeout=h.read_timeout, proxy=proxy,
                   no_proxy=list(h.no_proxy), agent_id=agent_id, keys=keys, retry=retry)

    # -- plumbing
    def _send(self, method: str, path: str, *, params: dict[str, Any] | list[tuple[str, str]] | None = None,
              body: Any = None, raw: bytes | None = None, headers: dict[str, str] | None = None,
              stream: bool = False, signed: bool = True,
              timeout: tuple[float, float] | None = None) -> requests.Response:
        target = path + ("?" + urlencode(params) if params else "")
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        hdrs = dict(headers or {})
        if body is not None:
            hdrs["Content-Type"] = "application/json"
        if signed and self.agent_id and self.keys is not None:
            from .reqsign import sign_request
            hdrs.update(sign_request(self.agent_id, self.keys, method, target, data))
        try:
            resp = self.session.request(method, self.base_url + target, data=data or None,
                                        headers=hdrs, timeout=timeout or self.timeout, stream=stream)
        except requests.exceptions.SSLError as e:
            raise HubUnreachable(f"TLS handshake with {self.base_url} failed: {_short(e)}",
                                 remedy="Set hub.ca_file to the platform's CA bundle and check the "
                                        "machine's clock; `edx-agent doctor` shows the certificate chain.") from None
        except requests.exceptions.ProxyError as e:
            raise HubUnreachable(f"proxy refused the connection: {_short(e)}",
                                 remedy="Check hub.proxy and its credentials.") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                requests.exceptions.ChunkedEncodingError) as e:  # a body cut mid-answer is a network fault
            raise HubUnreachable(f"{self.base_url}: {_short(e)}") from None
        except requests.exceptions.RequestException as e:
            raise PlatformError(_short(e)) from None
        if resp.status_code >= 400:
            err = _error_from_response(resp)
            resp.close()
            raise err
        return resp

    def _json(self, method: str, path: str, *, idempotent: bool = True, **kw: Any) -> Any:
        def once() -> Any:
            resp = self._send(method, path, **kw)
            try:
                return resp.json()
            except ValueError:
                raise HubProtocolError(f"{path}: answer is not JSON") from None
        return (self.retry if idempotent else NO_RETRY).run(once)

    # -- the agent API
    def hello(self) -> dict[str, Any]:
        return self._json("GET", "/v1/hello", signed=False)

    def enrol(self, token: str, hostname: str, keys_public: dict[str, Any]) -> dict[str, Any]:
        body = {"token": token, "hostname": hostname, "agent_version": __version__, "keys": keys_public}
        return self._json("POST", "/v1/enrol", body=body, signed=False, idempotent=False)

    def grants(self) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/grants")["grants"]

    def batches(self, dataset: str, after: int, limit: int = 100) -> dict[str, Any]:
        return self._json("GET", "/v1/batches", params={"dataset": dataset, "after": after, "limit": limit})

    def wait_batches(self, cursors: dict[str, int], wait: float) -> dict[str, int]:
        """Long-poll: the datasets with a batch after their cursor, as soon as there is one (or {} after
        ``wait`` seconds). One attempt: the caller's loop decides about retries."""
        params = [("cursor", f"{d}:{s}") for d, s in sorted(cursors.items())] + [("wait", f"{wait:g}")]
        resp = self._send("GET", "/v1/batches/wait", params=params,
                          timeout=(self.timeout[0], wait + max(self.timeout[1], 10.0)))
        try:
            return dict(resp.json()["ready"])
        except (ValueError, KeyError, TypeError):
            raise HubProtocolError("/v1/batches/wait: answer is not the documented JSON") from None

    def envelope(self, dataset: str, seq: int, offset: int = 0) -> requests.Response:
        """Stream a sealed batch from ``offset`` (HTTP Range), for resumable downloads."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        return self._send("GET", f"/v1/batches/{dataset}/{seq}/envelope", headers=headers, stream=True)

    def ack(self, dataset: str, seq: int, receipt: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", f"/v1/batches/{dataset}/{seq}/ack", body={"receipt": receipt})

    def heartbeat(self, status: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/v1/heartbeat", body=status)

    def command_result(self, command_id: str, ok: bool, detail: str = "",
                       report: Any = None) -> dict[str, Any]:
        return self._json("POST", f"/v1/commands/{command_id}/result",
                          body={"ok": ok, "detail": detail, "report": report})

    def rotate_keys(self, keys_public: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/v1/keys", body={"keys": keys_public})

    def resync(self, dataset: str) -> dict[str, Any]:
        return self._json("POST", "/v1/resync", body={"dataset": dataset}, idempotent=False)

    def feedback(self, doc: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/v1/feedback", body=doc, idempotent=False)

    def data_request(self, message: str) -> dict[str, Any]:
        return self._json("POST", "/v1/requests", body={"message": message}, idempotent=False)

    def test_report(self, report: dict[str, Any], correlation_id: str) -> dict[str, Any]:
        return self._json("POST", "/v1/test-reports",
                          body={"report": report, "correlation_id": correlation_id}, idempotent=False)

    def test_batch(self) -> requests.Response:
        return self._send("GET", "/v1/test-batch", stream=True)

    def upload_diagnostics(self, data: bytes) -> dict[str, Any]:
        resp = self._send("POST", "/v1/diagnostics", raw=data,
                          headers={"Content-Type": "application/zip"})
        return resp.json()

    def close(self) -> None:
        self.session.close()


def _short(e: BaseException) -> str:
    text = str(e)
    # urllib3 wraps the useful part deep inside; keep the innermost reason readable
    for marker in ("Caused by ", "] "):
        if marker in text:
            text = text.split(marker)[-1]
    return text.strip("()'\" ")[:300]


def iter_body(resp: requests.Response, chunk: int = 1 << 16) -> Iterator[bytes]:
    try:
        yield from resp.iter_content(chunk)
    except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
            requests.exceptions.Timeout) as e:
        raise HubUnreachable(f"download interrupted: {_short(e)}") from None
    finally:
        resp.close()
