"""Online diagnosis, step by step: network → TLS → platform → clock → database → disk.

Each step records ✓/✗, its time, what it saw, and for a failure the likely cause and the fix. A failed
step does not stop the others where they can still run (a dead hub does not hide a database problem).
The same report is printed by ``edx-agent doctor``, embedded in the joint-debug report and uploaded
when the platform asks for it through a heartbeat command.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import shutil
import socket
import ssl
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from .config import AgentConfig
from .errors import AgentError

TIME_ERROR = 5          # adjtimex(2): the kernel says the clock is not synchronised
MAX_SKEW_S = 60.0       # request signatures allow 300 s; warn well before that
CERT_WARN_DAYS = 30


@dataclass
class Step:
    name: str
    ok: bool
    seconds: float = 0.0
    detail: str = ""
    remedy: str = ""
    code: str = ""
    skipped: bool = False


@dataclass
class Report:
    steps: list[Step] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(s.ok or s.skipped for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "steps": [asdict(s) for s in self.steps], "facts": self.facts}


class _Fail(Exception):
    def __init__(self, detail: str, remedy: str = "", code: str = "") -> None:
        super().__init__(detail)
        self.detail, self.remedy, self.code = detail, remedy, code


def _run(report: Report, name: str, fn: Callable[[], str], needs: list[str] | None = None) -> bool:
    failed = {s.name for s in report.steps if not s.ok and not s.skipped} | \
        {s.name for s in report.steps if s.skipped}
    blocked = [n for n in (needs or []) if n in failed]
    if blocked:
        report.steps.append(Step(name, False, skipped=True, detail=f"skipped: {blocked[0]} failed"))
        return False
    t0 = time.monotonic()
    try:
        detail = fn()
        report.steps.append(Step(name, True, time.monotonic() - t0, detail))
        return True
    except _Fail as e:
        report.steps.append(Step(name, False, time.monotonic() - t0, e.detail, e.remedy, e.code))
    except AgentError as e:
        report.steps.append(Step(name, False, time.monotonic() - t0, str(e), e.remedy_text, e.code))
    except Exception as e:  # a probe must report, never crash the whole diagnosis
        report.steps.append(Step(name, False, time.monotonic() - t0, f"{type(e).__name__}: {e}"))
    return False


def clock_synchronised() -> bool | None:
    """Ask the kernel (adjtimex) whether NTP/chrony keeps the clock synchronised; None if unknown."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex with modes = 0: read only
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != TIME_ERROR


def tls_remedy(err: ssl.SSLError | ssl.CertificateError, host: str) -> str:
    text = str(err)
    if "unable to get local issuer" in text or "self-signed" in text or "self signed" in text:
        return "TLS: certificate signed by an unknown authority — set hub.ca_file to the platform's CA bundle."
    if "expired" in text:
        return "TLS: the platform's certificate has expired, or this machine's clock is wrong — check the date."
    if "hostname" in text.lower() or "match" in text.lower():
        return f"TLS: the certificate is not valid for {host} — use the host name the platform team gave you."
    return "TLS handshake failed — check hub.ca_file, hub.url and any proxy or 网闸 in between."


def diagnose(cfg: AgentConfig, *, connector_factory: Callable[[], Any] | None = None,
             client_factory: Callable[[], Any] | None = None) -> Report:
    """Run every step against the configured hub and database."""
    from .state import StateDir

    report = Report()
    state = StateDir(cfg.state_dir)
    enr = state.enrolment() if state.is_enrolled() else None
    url = cfg.hub.url or (enr.hub_url if enr else "")
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addrs: list[Any] = []

    def dns() -> str:
        if not host:
            raise _Fail("no hub URL configured", "Set hub.url, or enrol with --hub URL.", "config-invalid")
        try:
            addrs.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except socket.gaierror as e:
            raise _Fail(f"{host}: {e.strerror}", "DNS: the name does not resolve — check /etc/resolv.conf or "
                        "use the address the platform team gave you.", "hub-unreachable") from None
        return ", ".join(sorted({a[4][0] for a in addrs}))

    def tcp() -> str:
        try:
            with socket.create_connection((host, port), timeout=cfg.hub.connect_timeout):
                pass
        except OSError as e:
            raise _Fail(f"{host}:{port}: {e.strerror or e}", "TCP: the port is closed or filtered — ask for the "
                        "firewall/网闸 rule from this machine to the platform.", "hub-unreachable") from None
        return f"{host}:{port} open"

    def tls() -> str:
        if parts.scheme != "https":
            if host in ("127.0.0.1", "localhost", "::1"):
                return "plain HTTP to a hub on this machine (test setup)"
            raise _Fail("hub.url is not https", "Use the https:// address of the platform.", "config-invalid")
        ctx = ssl.create_default_context(cafile=str(cfg.path(cfg.hub.ca_file)) if cfg.hub.ca_file else None)
        try:
            with socket.create_connection((host, port), timeout=cfg.hub.connect_timeout) as raw:
                with ctx.wrap_socket(raw, server_hostname=host) as s:
                    cert = s.getpeercert() or {}
                    version = s.version()
        except (ssl.SSLError, ssl.CertificateError) as e:
            raise _Fail(str(e), tls_remedy(e, host), "hub-unreachable") from None
        not_after = dt.datetime.strptime(cert["notAfter"], "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.timezone.utc)
        days = (not_after - dt.datetime.now(dt.timezone.utc)).days
        report.facts["hub_cert_days_left"] = days
        issuer = dict(x[0] for x in cert.get("issuer", ()))
        if days < CERT_WARN_DAYS:
            raise _Fail(f"certificate expires in {days} days", "Ask the platform team to renew it.", "hub-cert-expiring")
        return f"{version}, issuer {issuer.get('organizationName') or issuer.get('commonName', '?')}, {days} days left"

    client = client_factory() if client_factory else None

    def api() -> str:
        hello = client.hello()
        report.facts["hub_api_version"] = hello.get("api_version")
        report.facts["hub_time_ms"] = hello.get("server_time_ms")
        if str(hello.get("api_version")) != "1":
            raise _Fail(f"hub API version {hello.get('api_version')}", "Upgrade the agent to one that speaks this "
                        "platform's API version.", "hub-protocol-error")
        return f"API v{hello.get('api_version')}"

    def auth() -> str:
        if enr is None:
            raise _Fail("not enrolled", "Run `edx-agent enrol --token T --hub URL`.", "agent-not-enrolled")
        grants = client.grants()
        return f"agent {enr.agent_id} accepted; {len(grants)} grant(s)"

    def clock() -> str:
        t0 = time.time()
        hello = client.hello()
        rtt = time.time() - t0
        skew = (t0 + rtt / 2) - hello["server_time_ms"] / 1000
        report.facts["clock_skew_s"] = round(skew, 3)
        synced = clock_synchronised()
        report.facts["ntp_synchronised"] = synced
        if abs(skew) > MAX_SKEW_S:
            raise _Fail(f"this clock is {skew:+.1f}s off the platform's", "Enable time synchronisation "
                        "(chrony or systemd-timesyncd) against the extranet's NTP server.", "clock-skew")
        note = {True: "NTP synchronised", False: "NTP NOT synchronised", None: "NTP state unknown"}[synced]
        if synced is False:
            raise _Fail(f"skew {skew:+.2f}s but {note}", "Enable chrony or systemd-timesyncd; an unsynchronised "
                        "clock drifts until signatures are refused.", "clock-unsynchronised")
        return f"skew {skew:+.3f}s, {note}"

    _run(report, "dns", dns)
    _run(report, "tcp", tcp, ["dns"])
    _run(report, "tls", tls, ["tcp"])
    if client is not None:
        _run(report, "hub_api", api, ["tls"])
        _run(report, "agent_auth", auth, ["hub_api"])
        _run(report, "clock", clock, ["hub_api"])
    conn_holder: list[Any] = []

    def db_connect() -> str:
        conn = connector_factory() if connector_factory else None
        if conn is None:
            raise _Fail("no connector", "Set database.url.", "config-invalid")
        conn_holder.append(conn)
        return f"{conn.name} via {conn.capabilities.bulk_path}"

    _run(report, "database_connect", db_connect)
    if conn_holder:
        conn = conn_holder[0]
        try:
            items = conn.probe(cfg.database.schema_name or None)
        except AgentError as e:
            items = []
            report.steps.append(Step("database_probe", False, 0.0, str(e), e.remedy_text, e.code))
        for it in items:
            report.steps.append(Step(f"database:{it.name}", it.ok, 0.0, it.detail, it.remedy))
        conn.close()

    def disk() -> str:
        root = cfg.spool_dir
        root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(root).free
        need = min(cfg.spool.quota_mb << 20, 1 << 30)
        report.facts["spool_free_bytes"] = free
        if free < need:
            raise _Fail(f"{free >> 20} MiB free in {root}", f"Free disk space or lower spool.quota_mb; the spool "
                        f"needs at least {need >> 20} MiB of headroom.", "spool-full")
        return f"{free >> 20} MiB free in {root}"

    _run(report, "disk", disk)
    return report


def render(report: Report) -> str:
    lines = []
    for s in report.steps:
        mark = "-" if s.skipped else ("✓" if s.ok else "✗")
        lines.append(f"{mark} {s.name:<28} {s.seconds * 1000:7.1f} ms  {s.detail}")
        if not s.ok and not s.skipped and s.remedy:
            lines.append(f"    → {s.remedy}")
    lines.append("all checks passed" if report.ok else "some checks failed")
    return "\n".join(lines)
