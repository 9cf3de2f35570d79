"""Typed envelope failures: one IntegrityError subclass per way a batch can be refused, each with a stable code.

The codes are the contract with the hub and the operators (docs/envelope.md §Errors): they are logged with
the batch identity, reported to the platform and never change meaning. Code above the envelope catches
``IntegrityError`` (or a subclass) and nothing else; malformed input never escapes as a generic exception.
"""

from __future__ import annotations

from ..errors import IntegrityError

_UPGRADE = "Upgrade the agent (pip install -U edx-agent, or the offline bundle) to read this batch."
_SPOOL = ("The batch was refused before touching the database and kept in the spool; "
          "report the code to the platform team.")


class EnvelopeError(IntegrityError):
    """Base of every envelope failure."""

    code = "envelope-invalid"
    message = "envelope refused: {detail}"
    remedy = _SPOOL


class BadMagic(EnvelopeError):
    code = "envelope-bad-magic"
    message = "not an envelope (bad magic bytes): {detail}"
    remedy = ("The file is not an edx envelope or was damaged in transit (text-mode transfer, proxy "
              "rewriting); download it again.")


class UnsupportedVersion(EnvelopeError):
    code = "envelope-unsupported-version"
    message = "envelope uses a version or feature this agent does not support: {detail}"
    remedy = _UPGRADE


class UnknownCriticalTag(UnsupportedVersion):
    # a subclass: an unknown critical tag is a mandatory feature the agent lacks, so "upgrade" applies
    code = "envelope-unknown-critical-tag"
    message = "envelope header has a critical field this agent does not know: {detail}"
    remedy = _UPGRADE


class HeaderMalformed(EnvelopeError):
    code = "envelope-header-malformed"
    message = "envelope header is malformed: {detail}"


class SuiteNotAllowed(EnvelopeError):
    code = "envelope-suite-not-allowed"
    message = "cipher suite not allowed by this agent's policy: {detail}"
    remedy = ("The platform sealed the batch with a suite this agent refuses (envelope.allowed_suites); "
              "ask the platform to seal with an allowed suite, or change the policy if that is intended.")


class SignerUnknown(EnvelopeError):
    code = "envelope-signer-unknown"
    message = "envelope is signed by a key this agent does not trust: {detail}"
    remedy = ("Check the platform signing keys in the trust store; after a platform key rotation, install "
              "the signed trust update the platform published.")


class SignerNotValid(SignerUnknown):
    code = "envelope-signer-expired"
    message = "envelope signer key is not valid at the batch's creation time: {detail}"


class SignatureInvalid(EnvelopeError):
    code = "envelope-signature-invalid"
    message = "envelope header signature does not verify: {detail}"


class WrongRecipient(EnvelopeError):
    code = "envelope-wrong-recipient"
    message = "envelope is sealed for another recipient or key: {detail}"
    remedy = ("The batch was sealed for another agent, or for a key this agent no longer holds; check the "
              "agent id and that the platform has this agent's current public key.")


class WrongDataset(EnvelopeError):
    code = "envelope-wrong-dataset"
    message = "envelope carries another dataset than the one requested: {detail}"


class Expired(EnvelopeError):
    code = "envelope-expired"
    message = "envelope has expired: {detail}"
    remedy = "Check the machine clock (timedatectl); if it is right, ask the platform to publish the batch again."


class TooLarge(EnvelopeError):
    code = "envelope-too-large"
    message = "envelope exceeds this agent's size limits: {detail}"
    remedy = "Raise the envelope size limits in the configuration if the batch is expected to be this large."


class KeyUnwrapFailed(EnvelopeError):
    code = "envelope-key-unwrap-failed"
    message = "could not unwrap the batch data key: {detail}"


class ChunkInvalid(EnvelopeError):
    code = "envelope-chunk-invalid"
    message = "an encrypted chunk failed authentication: {detail}"


class ChunkTruncated(EnvelopeError):
    code = "envelope-chunk-truncated"
    message = "envelope ends before its last chunk: {detail}"
    remedy = "The download was cut short; fetch the batch again."


class TrailingData(EnvelopeError):
    code = "envelope-trailing-data"
    message = "bytes follow the envelope's final chunk: {detail}"


class DigestMismatch(EnvelopeError):
    code = "envelope-digest-mismatch"
    message = "payload digest does not match the signed header: {detail}"


class LengthMismatch(EnvelopeError):
    code = "envelope-length-mismatch"
    message = "decompressed payload length does not match the signed header: {detail}"


class DecompressionBomb(EnvelopeError):
    code = "envelope-decompression-bomb"
    message = "payload would decompress beyond its declared size or allowed window: {detail}"


class PayloadCorrupt(EnvelopeError):
    code = "envelope-payload-corrupt"
    message = "payload is authentic but cannot be decompressed: {detail}"


class PayloadIncomplete(EnvelopeError):
    code = "envelope-payload-unfinished"
    message = "payload was not read to its end before finishing: {detail}"
    remedy = "A program error in the caller: read the payload stream to EOF before calling finish()."


class Replayed(EnvelopeError):
    code = "envelope-replayed"
    message = "batch sequence was already applied with different content: {detail}"
    remedy = ("A batch with this sequence number was applied before and this one differs: a replay or a "
              "platform fault. Nothing was applied; report it to the platform security contact.")


class SequenceGap(EnvelopeError):
    code = "envelope-gap"
    message = "batch sequence skips batches not yet applied: {detail}"
    remedy = "The agent holds this batch and asks the platform for the missing ones (补传)."


class ChainFork(EnvelopeError):
    code = "envelope-fork"
    message = "batch does not continue the chain of applied batches: {detail}"
    remedy = ("The batch's previous-batch hash differs from the last applied batch: a fork or tampering. "
              "Nothing was applied; report it, then `edx-agent resync DATASET` if the platform confirms.")


class ReceiptInvalid(IntegrityError):
    code = "receipt-invalid"
    message = "receipt does not verify: {detail}"
    remedy = "The receipt was altered or signed by another key; ask the agent to acknowledge the batch again."


class TrustUpdateInvalid(IntegrityError):
    code = "trust-update-invalid"
    message = "signing-key rotation message does not verify: {detail}"
    remedy = "Install only trust updates published by the platform, signed by its current key."


ALL_ERRORS = (
    EnvelopeError, BadMagic, UnsupportedVersion, UnknownCriticalTag, HeaderMalformed, SuiteNotAllowed,
    SignerUnknown, SignerNotValid, SignatureInvalid, WrongRecipient, WrongDataset, Expired, TooLarge,
    KeyUnwrapFailed, ChunkInvalid, ChunkTruncated, TrailingData, DigestMismatch, LengthMismatch,
    DecompressionBomb, PayloadCorrupt, PayloadIncomplete, Replayed, SequenceGap, ChainFork, ReceiptInvalid,
    TrustUpdateInvalid,
)
