"""The project's one error tree: stable codes, remedies, exit codes and the retry decision.

Every failure a user can meet is an ``AgentError`` subclass with a stable kebab-case ``code``
(the same in every language), a message template, a ``remedy`` sentence saying what to do, and a
sysexits-style ``exit_code``. Whether a failure is retried is decided by the ``Transient`` /
``Terminal`` markers and nothing else. Driver and HTTP errors are translated into this tree at
their seam (a connector's ``classify()``, the hub client); code above the seams never catches a
driver's exception. The hub uses the same tree so both sides speak the same codes.

Templates and remedies are written in English and translated when the error is shown (``str()``,
``remedy_text``, ``to_dict()``) into the language agent.i18n has chosen; the code never changes.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .i18n import _

# sysexits-style exit codes (documented in docs/operations.md)
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DATAERR = 65
EXIT_UNAVAILABLE = 69
EXIT_SOFTWARE = 70
EXIT_TEMPFAIL = 75
EXIT_NOPERM = 77
EXIT_CONFIG = 78


class AgentError(Exception):
    """Base of every error the project raises on purpose."""

    code: ClassVar[str] = "agent-error"
    message: ClassVar[str] = "{detail}"
    remedy: ClassVar[str] = ""
    exit_code: ClassVar[int] = EXIT_FAILED
    transient: ClassVar[bool] = False

    def __init__(self, detail: str = "", *, remedy: str | None = None, **context: Any) -> None:
        self.detail = detail
        self.context = context
        if remedy is not None:
            self.remedy_text = remedy
        else:
            self.remedy_text = type(self).remedy
        super().__init__(self._render(type(self).message))  # args keep the English text

    def _render(self, template: str) -> str:
        try:
            return template.format(detail=self.detail, **self.context)
        except (KeyError, IndexError):
            return f"{template} {self.detail}".strip()

    def __str__(self) -> str:
        """The message in the current language; the detail (data from the failure) is not translated."""
        translated = _(type(self).message)
        if translated == type(self).message:
            return super().__str__()
        try:
            return translated.format(detail=self.detail, **self.context)
        except (KeyError, IndexError, ValueError):  # a broken translation must not hide the error
            return super().__str__()

    @property
    def remedy_text(self) -> str:
        """What to do, in the current language."""
        return _(self._remedy) if self._remedy else ""

    @remedy_text.setter
    def remedy_text(self, value: str) -> None:
        self._remedy = value or ""

    @property
    def text(self) -> str:
        return str(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description, as reported to the hub and printed by ``--json``."""
        return {
            "code": self.code,
            "message": self.text,
            "remedy": self.remedy_text,
            "transient": self.transient,
        }


class Transient:
    """Marker: the operation may succeed if retried later (network blip, deadlock, hub busy)."""

    transient: ClassVar[bool] = True


class Terminal:
    """Marker: retrying cannot help; a person must act (bad credentials, schema conflict, tampering)."""

    transient: ClassVar[bool] = False


def is_transient(exc: BaseException) -> bool:
    """The one retry decision: only errors of the tree marked Transient are retried."""
    return isinstance(exc, AgentError) and exc.transient


# --- configuration -------------------------------------------------------------------------

class ConfigError(Terminal, AgentError):
    code = "config-invalid"
    message = "configuration is invalid: {detail}"
    remedy = "Fix the listed settings in the configuration file, then run `edx-agent check`."
    exit_code = EXIT_CONFIG


class ConfigMissing(ConfigError):
    code = "config-missing"
    message = "configuration file not found: {detail}"
    remedy = "Create one with `edx-agent init --config PATH --database URL`, or pass --config."


class KeyFileError(ConfigError):
    code = "key-file-invalid"
    message = "key file problem: {detail}"
    remedy = "Check the key files named in [keys]; they must be readable by the agent only (mode 0600)."


class NotEnrolled(ConfigError):
    code = "agent-not-enrolled"
    message = "this agent is not enrolled with a hub yet"
    remedy = "Ask the platform for an enrolment token, then run `edx-agent enrol --token T --hub URL`."


# --- the platform (hub) ------------------------------------------------------------------------

class PlatformError(AgentError):
    code = "platform-error"
    message = "platform request failed: {detail}"
    exit_code = EXIT_UNAVAILABLE


class HubUnreachable(Transient, PlatformError):
    code = "hub-unreachable"
    message = "cannot reach the hub: {detail}"
    remedy = ("Check hub.url, DNS, the firewall and any proxy towards the platform; "
              "`edx-agent doctor` tests each step.")
    exit_code = EXIT_UNAVAILABLE


class HubBusy(Transient, PlatformError):
    code = "hub-busy"
    message = "the hub asked us to come back later: {detail}"
    remedy = "Nothing to do; the agent retries with backoff."
    exit_code = EXIT_TEMPFAIL


class HubProtocolError(Terminal, PlatformError):
    code = "hub-protocol-error"
    message = "the hub answered something this agent does not understand: {detail}"
    remedy = "Check hub.url points at the data platform's agent API and that agent and platform versions match."


class AuthError(Terminal, PlatformError):
    code = "agent-auth-failed"
    message = "the hub refused this agent's credentials: {detail}"
    remedy = "The agent may have been revoked or disabled; ask the platform team, then re-enrol if needed."
    exit_code = EXIT_NOPERM


class EnrolmentError(Terminal, PlatformError):
    code = "enrolment-refused"
    message = "enrolment refused: {detail}"
    remedy = "Enrolment tokens are single-use and expire after 30 minutes; ask the platform for a new one."
    exit_code = EXIT_NOPERM


class BatchSuperseded(Transient, PlatformError):
    """A listed batch whose envelope the hub collected after a later snapshot (HTTP 410): list again."""
    code = "batch-superseded"
    message = "the batch was superseded by a later snapshot and is no longer kept on the hub: {detail}"
    remedy = "Nothing to do: the agent lists the batches again and continues from the latest snapshot."
    http_status = 410
    retry_inline = False   # asking again for the same envelope cannot help; the listing can


class NotFound(Terminal, PlatformError):
    code = "not-found"
    message = "not found on the hub: {detail}"
    remedy = "Check the dataset name and that this unit holds a grant for it."


# --- integrity (envelope, receipts, audit) -----------------------------------------------------

class IntegrityError(Terminal, AgentError):
    """A batch or record failed verification. Never retried, never applied, kept for investigation."""

    code = "integrity-error"
    message = "integrity check failed: {detail}"
    remedy = ("The batch was refused before touching the database and kept in the spool; "
              "report the code to the platform team.")
    exit_code = EXIT_DATAERR


# --- data and schema ---------------------------------------------------------------------------

class DataError(Terminal, AgentError):
    code = "data-invalid"
    message = "data does not match its schema: {detail}"
    remedy = "Fix the source rows or the schema and publish again."
    exit_code = EXIT_DATAERR


class SchemaError(Terminal, AgentError):
    code = "schema-invalid"
    message = "schema is invalid: {detail}"
    remedy = ("Use the portable types: int32, int64, decimal(p,s), float64, bool, string(n), text, "
              "date, time, timestamp, timestamptz, uuid, binary, json.")
    exit_code = EXIT_DATAERR


class SchemaConflict(Terminal, AgentError):
    code = "schema-conflict"
    message = "the target table cannot take this schema change: {detail}"
    remedy = ("Only added nullable columns and lossless widening are applied in place; "
              "ask for a fresh snapshot with `edx-agent resync DATASET`.")
    exit_code = EXIT_DATAERR


# --- connectors (local database) ---------------------------------------------------------------

class ConnectorError(AgentError):
    code = "database-error"
    message = "database error: {detail}"
    exit_code = EXIT_FAILED


class DatabaseUnavailable(Transient, ConnectorError):
    code = "database-unavailable"
    message = "cannot reach the database: {detail}"
    remedy = "Check that the database is running and that database.url points at it; the agent retries."
    exit_code = EXIT_TEMPFAIL


class DatabaseBusy(Transient, ConnectorError):
    code = "database-busy"
    message = "the database is busy (deadlock or lock timeout): {detail}"
    remedy = "Nothing to do unless it persists; then look for long transactions locking the table."
    exit_code = EXIT_TEMPFAIL


class DatabasePermission(Terminal, ConnectorError):
    code = "database-permission-denied"
    message = "the database refused a privilege: {detail}"
    remedy = "Grant the sync account the rights listed in docs/grants/ for your database."
    exit_code = EXIT_NOPERM


class DatabaseConfigError(Terminal, ConnectorError):
    code = "database-config"
    message = "the database is not set up as the agent needs: {detail}"
    exit_code = EXIT_CONFIG


class DriverMissing(Terminal, ConnectorError):
    code = "driver-missing"
    message = "the database driver is not installed: {detail}"
    exit_code = EXIT_CONFIG


class UnknownConnector(Terminal, ConnectorError):
    code = "connector-unknown"
    message = "no connector for database URL scheme {detail!r}"
    exit_code = EXIT_CONFIG


class QuarantineLimitExceeded(Terminal, ConnectorError):
    code = "quarantine-limit-exceeded"
    message = "too many rows refused by the database: {detail}"
    remedy = ("Nothing was written. Look at the reasons (edx-agent status), fix the table or report the "
              "rows to the provider with `edx-agent feedback`.")
    exit_code = EXIT_DATAERR


class ReconciliationError(Terminal, ConnectorError):
    code = "reconciliation-mismatch"
    message = "the applied rows do not match the batch: {detail}"
    remedy = "Nothing was committed. Report the code to the platform team; a resync may be needed."
    exit_code = EXIT_DATAERR


class StorageError(AgentError):
    code = "storage-error"
    message = "local storage problem: {detail}"
    exit_code = EXIT_TEMPFAIL


class SpoolFull(Transient, StorageError):
    code = "spool-full"
    message = "the spool has no room: {detail}"
    remedy = "Free disk space or raise spool.quota_mb; the agent resumes by itself when space returns."


class FsyncFailed(Terminal, StorageError):
    code = "fsync-failed"
    message = "the disk reported a write error: {detail}"
    remedy = "Check the disk (dmesg, smartctl); the dataset is stopped until the agent is restarted."
