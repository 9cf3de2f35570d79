"""Request signatures: how an agent authenticates every call to the hub (docs/protocol.md §Authentication).

Pure module, imported by both sides. The agent signs, the hub verifies; neither does I/O here. The
signed bytes are

    b"EDX-REQ/v1\\n" + METHOD + "\\n" + path_with_query + "\\n" + time_ms + "\\n" + nonce + "\\n"
      + hex(sha256(body))

sent in four headers (``X-EDX-Agent``, ``X-EDX-Time``, ``X-EDX-Nonce``, ``X-EDX-Signature``). The
signature primitive is the suite's (Ed25519 for INTL1, SM2 for GM1), reached through the envelope's key
classes (``AgentKeys.sign`` / ``AgentPublicKeys.verify``) so this module never branches on the suite.
Replay protection needs memory of nonces, so the hub does it (``RequestReplayed`` is defined here so
both sides share the code).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import time
from typing import Any, Mapping

from .errors import AuthError

PREFIX = b"EDX-REQ/v1\n"
H_AGENT = "X-EDX-Agent"
H_TIME = "X-EDX-Time"
H_NONCE = "X-EDX-Nonce"
H_SIGNATURE = "X-EDX-Signature"
MAX_SKEW_MS = 300_000
_NONCE_RE = re.compile(r"^[0-9a-f]{32}$")
_TIME_RE = re.compile(r"^[0-9]{1,16}$")
_AGENT_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class SignatureInvalid(AuthError):
    code = "auth-signature-invalid"
    message = "the request signature is missing or invalid: {detail}"
    remedy = ("The agent's signing key does not match the one registered at enrolment, or a proxy "
              "rewrote the request; check the agent's key files, or re-enrol.")


class ClockSkew(AuthError):
    code = "auth-clock-skew"
    message = "the request time is too far from the hub's clock: {detail}"
    remedy = "Synchronise this machine's clock (NTP / chrony); the hub allows at most 5 minutes of skew."


class RequestReplayed(AuthError):
    code = "auth-replayed"
    message = "this request was already received (nonce reused): {detail}"
    remedy = "Nothing to do for a one-off; if it repeats, something between agent and hub replays traffic."


def string_to_sign(method: str, path_with_query: str, time_ms: str, nonce: str, body: bytes) -> bytes:
    """The exact bytes covered by the signature."""
    return b"".join([
        PREFIX, method.upper().encode("ascii"), b"\n", path_with_query.encode("utf-8"), b"\n",
        time_ms.encode("ascii"), b"\n", nonce.encode("ascii"), b"\n",
        hashlib.sha256(body).hexdigest().encode("ascii"),
    ])


def sign_request(agent_id: str, keys: Any, method: str, path_with_query: str, body: bytes = b"",
                 now_ms: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """Headers that authenticate one request; ``keys`` is the agent's AgentKeys (has ``.sign``)."""
    t = str(int(time.time() * 1000) if now_ms is None else int(now_ms))
    n = nonce if nonce is not None else secrets.token_hex(16)
    sig = _sign(keys, string_to_sign(method, path_with_query, t, n, body))
    return {H_AGENT: agent_id, H_TIME: t, H_NONCE: n,
            H_SIGNATURE: base64.b64encode(sig).decode("ascii")}


def _sign(keys: Any, message: bytes) -> bytes:
    # The key classes' own method when present (a hardware-held key signs inside its module);
    # otherwise the suite's primitive from the envelope's provider (Ed25519 / SM2) on the raw key.
    if callable(getattr(keys, "sign", None)):
        return keys.sign(message)
    from .envelope.provider import get_provider
    return get_provider(keys.suite).sign(keys.sign_private, keys.sign_public, message)


def _verify(public: Any, message: bytes, signature: bytes) -> bool:
    if callable(getattr(public, "verify", None)):
        result = public.verify(message, signature)
        return result is None or bool(result)  # raising or returning False both mean "invalid"
    from .envelope.provider import get_provider
    return bool(get_provider(public.suite).verify(public.sign_public, message, signature))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    if value is None:
        for k, v in headers.items():
            if k.lower() == name.lower():
                return v
    return value


def parse_headers(headers: Mapping[str, str]) -> tuple[str, str, str, bytes]:
    """(agent_id, time_ms as sent, nonce, signature) from the headers, or SignatureInvalid naming the problem."""
    agent = _header(headers, H_AGENT)
    t = _header(headers, H_TIME)
    n = _header(headers, H_NONCE)
    s = _header(headers, H_SIGNATURE)
    missing = [h for h, v in ((H_AGENT, agent), (H_TIME, t), (H_NONCE, n), (H_SIGNATURE, s)) if not v]
    if missing:
        raise SignatureInvalid(f"missing header(s) {', '.join(missing)}")
    assert agent and t and n and s
    if not _AGENT_RE.match(agent):
        raise SignatureInvalid(f"{H_AGENT} is not a valid agent id")
    if not _TIME_RE.match(t):
        raise SignatureInvalid(f"{H_TIME} must be Unix time in milliseconds")
    if not _NONCE_RE.match(n):
        raise SignatureInvalid(f"{H_NONCE} must be 32 lowercase hex characters")
    try:
        sig = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureInvalid(f"{H_SIGNATURE} is not base64") from None
    return agent, t, n, sig


def verify_request(public: Any, headers: Mapping[str, str], method: str, path_with_query: str,
                   body: bytes, now_ms: int, max_skew_ms: int = MAX_SKEW_MS) -> None:
    """Check one request's signature and time against the agent's AgentPublicKeys (has ``.verify``).

    Raises SignatureInvalid or ClockSkew. The caller checks the agent id and the nonce's freshness.
    The signature is checked before the clock so a forged request never learns the hub's time.
    """
    _agent, t, n, sig = parse_headers(headers)
    message = string_to_sign(method, path_with_query, t, n, body)
    try:
        ok = _verify(public, message, sig)
    except Exception as e:  # any verification failure of any suite is one answer to the caller
        raise SignatureInvalid("signature does not verify with the agent's registered key") from e
    if not ok:
        raise SignatureInvalid("signature does not verify with the agent's registered key")
    skew = int(t) - now_ms
    if abs(skew) > max_skew_ms:
        raise ClockSkew(f"agent clock is {skew / 1000:+.0f} s off (limit ±{max_skew_ms // 1000} s)")


__all__ = ["ClockSkew", "H_AGENT", "H_NONCE", "H_SIGNATURE", "H_TIME", "MAX_SKEW_MS", "RequestReplayed",
           "SignatureInvalid", "parse_headers", "sign_request", "string_to_sign", "verify_request"]
