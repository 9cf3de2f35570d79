"""The agent's configuration: one TOML file, validated with every error listed with its path.

Validation is pydantic's; this module adds what operators need on top: all problems at once, each
with the dotted path of the setting, a "did you mean" for unknown keys, and file-permission checks
on secrets. Secrets never live in the file itself: the database password comes from a credential
file (systemd ``LoadCredential=``), an environment variable, or is absent.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError, ConfigMissing
from .i18n import N_, _

DEFAULT_CONFIG = "/etc/edx-agent/agent.toml"
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> float:
    """Seconds from 30, "30s", "5m", "2h", "1d"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _DURATION_RE.match(str(value))
    if not m:
        raise ValueError(_("{value} is not a duration (e.g. 30s, 5m, 2h)").format(value=repr(value)))
    return float(m.group(1)) * _UNITS[m.group(2)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentSection(_Section):
    name: str = ""
    state_dir: str = "/var/lib/edx-agent"
    lang: Literal["auto", "zh", "en"] = "auto"
    log_format: Literal["auto", "json", "console"] = "auto"


class HubSection(_Section):
    url: str = ""
    ca_file: str = ""
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    proxy: str = ""          # explicit proxy URL; environment proxies are never inherited
    no_proxy: list[str] = Field(default_factory=list)
    proxy_password_file: str = ""

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError(_("must start with https:// (http:// only for a hub on this machine)"))
        return v.rstrip("/")


class DatabaseSection(_Section):
    url: str
    password_file: str = ""   # read at start; systemd LoadCredential= puts it in $CREDENTIALS_DIRECTORY
    password_env: str = ""    # name of an environment variable holding the password
    schema_name: str = Field("", alias="schema")
    sandbox_prefix: str = "edx_test_"
    lineage_columns: bool = False   # _edx_batch and _edx_applied_at on every row of every dataset table

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if "://" not in v:
            raise ValueError(_("must be a SQLAlchemy URL such as sqlite:////var/lib/edx-agent/data.db "
                               "or mysql+pymysql://user@host/db"))
        return v


class KeysSection(_Section):
    suite: Literal["intl", "gm"] = "intl"
    allowed_suites: list[Literal["intl", "gm"]] = Field(default_factory=lambda: ["intl", "gm"])


class SyncSection(_Section):
    interval: float = 300.0
    jitter: float = 30.0
    quarantine_limit: float = Field(0.01, ge=0, le=1)
    max_batch_bytes: int = 64 << 30
    freshness_grace: float = 3600.0
    reconcile: Literal["count", "checksum"] = "checksum"
    long_poll: bool = False           # wait at the hub for new batches: applied within seconds, not at the next interval
    long_poll_wait: float = Field(25.0, ge=1, le=55)

    @field_validator("interval", "jitter", "freshness_grace", "long_poll_wait", mode="before")
    @classmethod
    def _dur(cls, v: Any) -> float:
        return parse_duration(v)


class SpoolSection(_Section):
    dir: str = ""             # default: <state_dir>/spool
    quota_mb: int = Field(10240, ge=1)


class HeartbeatSection(_Section):
    interval: float = 60.0

    @field_validator("interval", mode="before")
    @classmethod
    def _dur(cls, v: Any) -> float:
        return parse_duration(v)


class HealthSection(_Section):
    listen: str = "127.0.0.1:9464"
    enabled: bool = True


class AuditSection(_Section):
    dir: str = ""             # default: <state_dir>/audit
    hash: Literal["auto", "sha256", "sm3"] = "auto"    # auto: SM3 with the 国密 suite, else SHA-256
    retention_days: int = Field(180, ge=180)           # 网络安全法 §21: at least six months
    max_file_mb: int = Field(8, ge=1, le=1024)


class DatasetSection(_Section):
    table: str = ""
    interval: float | None = None
    enabled: bool = True

    @field_validator("interval", mode="before")
    @classmethod
    def _dur(cls, v: Any) -> float | None:
        return None if v is None else parse_duration(v)


class AgentConfig(_Section):
    agent: AgentSection = Field(default_factory=AgentSection)
    hub: HubSection = Field(default_factory=HubSection)
    database: DatabaseSection
    keys: KeysSection = Field(default_factory=KeysSection)
    sync: SyncSection = Field(default_factory=SyncSection)
    spool: SpoolSection = Field(default_factory=SpoolSection)
    heartbeat: HeartbeatSection = Field(default_factory=HeartbeatSection)
    health: HealthSection = Field(default_factory=HealthSection)
    audit: AuditSection = Field(default_factory=AuditSection)
    datasets: dict[str, DatasetSection] = Field(default_factory=dict)

    # set by load(): where the file was, to resolve relative paths
    source: str = ""

    def path(self, value: str) -> Path:
        """Resolve a path from the config relative to the config file's directory."""
        p = Path(value)
        if not p.is_absolute() and self.source:
            p = Path(self.source).parent / p
        return p

    @property
    def state_dir(self) -> Path:
        return self.path(self.agent.state_dir)

    @property
    def spool_dir(self) -> Path:
        return self.path(self.spool.dir) if self.spool.dir else self.state_dir / "spool"

    @property
    def audit_dir(self) -> Path:
        return self.path(self.audit.dir) if self.audit.dir else self.state_dir / "audit"

    def table_for(self, dataset: str) -> str:
        ds = self.datasets.get(dataset)
        return ds.table if ds and ds.table else dataset

    def database_password(self) -> str | None:
        """The database password from its credential file or environment variable, if configured."""
        if self.database.password_file:
            p = self.path(os.path.expandvars(self.database.password_file))
            return p.read_text(encoding="utf-8").strip()
        if self.database.password_env:
            return os.environ.get(self.database.password_env)
        return None

    def digest(self) -> str:
        """A digest of the effective settings (no secrets are in the file), reported to the hub."""
        doc = self.model_dump(mode="json", exclude={"source"})
        return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The valid keys at a location, to suggest the one an unknown key was meant to be."""
    m: Any = model
    parts = list(loc[:-1])
    while parts:
        fld = m.model_fields.get(parts.pop(0))
        if fld is None:
            return []
        m = fld.annotation
        if getattr(m, "__origin__", None) is dict:  # [datasets.NAME]: skip the free-form name
            m = m.__args__[1]
            if parts:
                parts.pop(0)
        if not hasattr(m, "model_fields"):
            return []
    names = [name for name in m.model_fields if name != "source"]
    return names + [f.alias for f in m.model_fields.values() if f.alias]


# pydantic's error types, spelled for people in both languages ({ctx} fields from the error's context)
_PROBLEMS = {
    "bool_parsing": N_("expected true or false"), "bool_type": N_("expected true or false"),
    "int_parsing": N_("expected a whole number"), "int_type": N_("expected a whole number"),
    "int_from_float": N_("expected a whole number"),
    "float_parsing": N_("expected a number"), "float_type": N_("expected a number"),
    "string_type": N_("expected text in quotes"),
    "list_type": N_("expected a list such as [\"a\", \"b\"]"),
    "dict_type": N_("expected a table (a [section])"), "model_type": N_("expected a table (a [section])"),
    "literal_error": N_("must be one of {expected}"),
    "greater_than_equal": N_("must be at least {ge}"), "less_than_equal": N_("must be at most {le}"),
    "greater_than": N_("must be more than {gt}"), "less_than": N_("must be less than {lt}"),
}


def format_errors(exc: ValidationError) -> list[str]:
    """One line per problem, in the operator's language: the setting's dotted path, then what is wrong."""
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        kind, ctx = err["type"], err.get("ctx") or {}
        if kind == "extra_forbidden":
            hint = difflib.get_close_matches(str(loc[-1]), _known_keys(AgentConfig, loc), n=1)
            msg = (_("{path}: unknown setting (did you mean {hint}?)").format(path=path, hint=repr(hint[0])) if hint
                   else _("{path}: unknown setting").format(path=path))
        elif kind == "missing":
            msg = _("{path}: required setting is missing").format(path=path)
        else:
            if kind == "value_error" and "error" in ctx:
                what = str(ctx["error"])        # our validators' own text, translated where raised
            elif kind in _PROBLEMS:
                what = _(_PROBLEMS[kind]).format(**{k: str(v) for k, v in ctx.items()})
            else:
                what = err["msg"]               # a rare pydantic message: English
            msg = _("{path}: {problem}").format(path=path, problem=what)
        problems.append(msg)
    return problems


def load(path: str | os.PathLike[str] | None = None) -> AgentConfig:
    """Read and validate the config; raise ConfigError listing every problem with its path."""
    p = Path(path or os.environ.get("EDX_AGENT_CONFIG") or DEFAULT_CONFIG)
    if not p.exists():
        raise ConfigMissing(str(p))
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}",
                          remedy="Fix the TOML syntax at the line shown (quotes, brackets, '=').") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read: {e}") from None
    try:
        cfg = AgentConfig.model_validate({**raw, "source": str(p.resolve())})
    except ValidationError as e:
        problems = format_errors(e)
        err = ConfigError(f"{p}: " + "; ".join(problems))
        err.problems = problems  # type: ignore[attr-defined]
        raise err from None
    return cfg


def permission_problems(cfg: AgentConfig) -> list[str]:
    """Secrets readable by others (key files, the password file): listed by ``check``."""
    problems: list[str] = []
    candidates: list[Path] = []
    keys_dir = cfg.state_dir / "keys"
    if keys_dir.is_dir():
        candidates += sorted(keys_dir.glob("*.json"))
    if cfg.database.password_file:
        expanded = os.path.expandvars(cfg.database.password_file)
        # ${CREDENTIALS_DIRECTORY} exists only inside the running service (systemd LoadCredential=);
        # an offline check outside it has nothing to inspect, which is not a problem
        if "$" not in expanded:
            candidates.append(cfg.path(expanded))
    for f in candidates:
        try:
            mode = f.stat().st_mode
        except OSError as e:
            problems.append(f"{f}: cannot read ({e.strerror})")
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            problems.append(f"{f}: readable by other users (mode {stat.S_IMODE(mode):04o}); "
                            f"run: chmod 600 {f}")
    return problems
