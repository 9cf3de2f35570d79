"""The hub's refusals: subclasses of the project's error tree, each with a stable code and an HTTP status.

The HTTP layer turns any ``AgentError`` into ``{"error": {"code", "message", "remedy"}}`` with the
class's ``http_status``; the CLI turns it into a message and the class's exit code. The agent maps the
same codes back into its tree, so a code here is a contract (docs/protocol.md §Errors).
"""

from __future__ import annotations

from agent.errors import (EXIT_DATAERR, EXIT_NOPERM, EXIT_USAGE, AgentError, AuthError, DataError,
                          EnrolmentError, NotFound, SchemaError, Terminal)

# default HTTP status per branch of the tree; a class may set its own ``http_status``
_STATUS_BY_BASE: list[tuple[type[AgentError], int]] = [
    (AuthError, 401), (EnrolmentError, 403), (NotFound, 404), (DataError, 400), (SchemaError, 400),
]


def http_status(exc: AgentError) -> int:
    explicit = getattr(exc, "http_status", None)
    if explicit:
        return int(explicit)
    for base, status in _STATUS_BY_BASE:
        if isinstance(exc, base):
            return status
    return 400 if not exc.transient else 503


class RequestInvalid(Terminal, AgentError):
    code = "request-invalid"
    message = "the request is malformed: {detail}"
    remedy = "Send the body described in docs/protocol.md (JSON, UTF-8, the listed fields)."
    exit_code = EXIT_USAGE
    http_status = 422


class RequestTooLarge(RequestInvalid):
    code = "request-too-large"
    message = "the request body is too large: {detail}"
    remedy = "Send less (diagnostics bundles are limited to 20 MiB, JSON bodies to 1 MiB)."
    http_status = 413


class ContentTypeUnsupported(RequestInvalid):
    code = "content-type-unsupported"
    message = "unsupported content type: {detail}"
    remedy = "Send application/json (application/zip for diagnostics bundles)."
    http_status = 415


class AdminAuthRequired(AuthError):
    code = "admin-auth-required"
    message = "admin token missing or wrong: {detail}"
    remedy = "Send `Authorization: Bearer <token>`; `edx-hub admin-token --data-dir DIR` prints it."


class AgentUnknown(AuthError):
    code = "agent-unknown"
    message = "no agent is enrolled under this id: {detail}"
    remedy = "Enrol this agent with a fresh token: `edx-agent enrol --token T --hub URL`."


class AgentNotFound(NotFound):
    code = "agent-not-found"
    message = "no agent {detail!s}"
    remedy = "List agents with `edx-hub agent list`."
    exit_code = EXIT_USAGE


class AgentRevoked(AuthError):
    code = "agent-revoked"
    message = "this agent has been revoked by the platform: {detail}"
    remedy = ("The platform team revoked this agent's registration (decommissioned or compromised); "
              "ask them, and enrol again with a new token only if they agree.")
    http_status = 403


class AgentDisabled(AuthError):
    code = "agent-disabled"
    message = "this agent is disabled by the platform: {detail}"
    remedy = "Ask the platform team to enable it again (`edx-hub agent enable`)."
    http_status = 403


class TokenUnknown(EnrolmentError):
    code = "enrolment-token-unknown"
    message = "the enrolment token is not known to this hub: {detail}"
    remedy = "Copy the token exactly as the platform gave it, and check hub.url points at that platform."
    http_status = 401


class TokenUsed(EnrolmentError):
    code = "enrolment-token-used"
    message = "the enrolment token was already used: {detail}"
    remedy = "Tokens are single-use; ask the platform for a new one."


class TokenExpired(EnrolmentError):
    code = "enrolment-token-expired"
    message = "the enrolment token has expired: {detail}"
    remedy = "Tokens expire 30 minutes after creation; ask the platform for a new one."


class KeysInvalid(RequestInvalid):
    code = "agent-keys-invalid"
    message = "the agent's public keys are not usable: {detail}"
    remedy = "Regenerate the agent's keys with `edx-agent init` (or `keys rotate`) and enrol again."


class DatasetUnknown(NotFound):
    code = "dataset-unknown"
    message = "no dataset {detail!s} in the catalog"
    remedy = "List the catalog with `edx-hub dataset list`; a new dataset needs --schema on first publish."
    exit_code = EXIT_USAGE


class DatasetExists(Terminal, AgentError):
    code = "dataset-exists"
    message = "dataset {detail!s} already exists"
    remedy = "Pick another name, or change it with `edx-hub dataset update`."
    exit_code = EXIT_USAGE
    http_status = 409


class CatalogInvalid(Terminal, AgentError):
    code = "catalog-invalid"
    message = "catalog entry is invalid: {detail}"
    remedy = "Sharing is 无条件/有条件/不予共享, classification 一般/重要/核心, retention keep/purge_after_days/purge_on_revoke."
    exit_code = EXIT_USAGE
    http_status = 422


class NotShareable(Terminal, AgentError):
    code = "grant-not-shareable"
    message = "dataset {detail!s} is classified 不予共享 (not shareable) and can never be granted"
    remedy = "Only 无条件 and 有条件 datasets can be granted; the provider must reclassify it first."
    exit_code = EXIT_NOPERM
    http_status = 409


class GrantMissing(Terminal, AgentError):
    code = "grant-missing"
    message = "this unit holds no active grant for {detail}"
    remedy = "Apply for the dataset on the platform; once approved, the grant appears in /v1/grants."
    exit_code = EXIT_NOPERM
    http_status = 403


class GrantRevoked(GrantMissing):
    code = "grant-revoked"
    message = "the grant for {detail} was revoked or has ended"
    remedy = "Apply the dataset's retention policy; apply again on the platform if the unit still needs it."


class SchemaChangeRefused(Terminal, AgentError):
    code = "schema-change-refused"
    message = "schema change is not backward compatible: {detail}"
    remedy = "Publish it as a snapshot (--kind snapshot) so every agent rebuilds the table, or keep the old types."
    exit_code = EXIT_DATAERR
    http_status = 409


class BatchUnknown(NotFound):
    code = "batch-unknown"
    message = "no such batch for this agent: {detail}"
    remedy = "List batches again with GET /v1/batches; a batch before the latest snapshot is no longer offered."


class ReceiptInvalid(RequestInvalid):
    code = "receipt-invalid"
    message = "the receipt does not verify: {detail}"
    remedy = "Sign receipts with the agent's registered key over the batch actually received."
    http_status = 400


class CommandUnknown(NotFound):
    code = "command-unknown"
    message = "no such command for this agent: {detail}"


class RangeNotSatisfiable(RequestInvalid):
    code = "range-not-satisfiable"
    message = "the requested byte range is outside the envelope: {detail}"
    remedy = "Restart the download from byte 0."
    http_status = 416


class KeySuiteChange(RequestInvalid):
    code = "agent-keys-suite-change"
    message = "a key rotation cannot change the cipher suite: {detail}"
    remedy = "Rotate within the same suite; changing suite means enrolling again with a new token."
