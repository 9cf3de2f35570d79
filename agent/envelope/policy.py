"""Checks of a verified header against the agent's context and chain state, all before any decryption.

``check_context`` compares the signed header with what the agent asked for (recipient, key, dataset, time,
size limits). ``check_sequence`` is the pure half of replay/gap/fork detection: the state it needs (last
applied sequence and ``hh`` per dataset) lives in the database checkpoint, written in the same transaction
as the rows, so the decision and the state can never disagree after a crash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from . import errors as E
from .header import BatchHeader
from .keys import AgentKeys, AgentPublicKeys
from .provider import consteq

ZERO_HH = bytes(32)


@dataclass(frozen=True)
class Limits:
    """Per-agent ceilings, from configuration. Defaults suit a 前置机 with a few GiB of spool."""

    max_payload_len: int = 16 << 30          # bytes on the wire (compressed)
    max_uncompressed_len: int = 64 << 30     # bytes after decompression
    max_row_count: int = 2_000_000_000
    clock_skew_ms: int = 5 * 60 * 1000       # allowance when comparing expires_at with our clock


DEFAULT_LIMITS = Limits()


def _key_ids(recipient_keys: Any) -> list[bytes]:
    if isinstance(recipient_keys, (AgentKeys, AgentPublicKeys, bytes)):
        recipient_keys = [recipient_keys]
    out = []
    for k in recipient_keys:
        out.append(k if isinstance(k, bytes) else k.key_id)
    return out


def check_context(header: BatchHeader, *, recipient_id: str,
                  recipient_keys: Iterable[AgentKeys | AgentPublicKeys | bytes] | AgentKeys,
                  dataset_id: str, now_ms: int, limits: Limits | None = None) -> None:
    """Raise unless the batch is for us (id and a key we hold: current or previous), for this dataset,
    unexpired, and within the size limits."""
    lim = limits or DEFAULT_LIMITS
    if header.recipient_id != recipient_id:
        raise E.WrongRecipient(f"sealed for {header.recipient_id!r}, this agent is {recipient_id!r}")
    ids = _key_ids(recipient_keys)
    if not any(consteq(header.recipient_key_id, k) for k in ids):
        raise E.WrongRecipient(f"sealed to key {header.recipient_key_id.hex()}, this agent holds "
                               f"{', '.join(k.hex() for k in ids) or 'no key'}")
    if header.dataset_id != dataset_id:
        raise E.WrongDataset(f"batch is for {header.dataset_id!r}, requested {dataset_id!r}")
    if header.expires_at_ms and now_ms > header.expires_at_ms + lim.clock_skew_ms:
        raise E.Expired(f"expired at {header.expires_at_ms} ms, now {now_ms} ms "
                        f"(allowance {lim.clock_skew_ms} ms)")
    for what, value, cap in (("payload_len", header.payload_len, lim.max_payload_len),
                             ("uncompressed_len", header.uncompressed_len, lim.max_uncompressed_len),
                             ("row_count", header.row_count, lim.max_row_count)):
        if value > cap:
            raise E.TooLarge(f"{what} {value} exceeds the limit {cap}")


def check_sequence(header: BatchHeader, last_seq: int, last_hh: bytes | None,
                   known_hh_for_seq: bytes | None | Callable[[int], bytes | None] = None,
                   ) -> Literal["apply", "duplicate"]:
    """Decide what to do with a batch given the dataset's checkpoint.

    * ``seq <= last_seq``: 'duplicate' if its ``hh`` equals the one stored for that sequence (ack again,
      apply nothing), else envelope-replayed;
    * a snapshot with ``seq >= last_seq``: 'apply' whatever ``prev_hh`` says (a snapshot rebases the chain;
      ``seq == last_seq`` is a resync of the current state, docs/architecture.md §Sequences);
    * changes: ``seq == last_seq + 1`` and ``prev_hh == last_hh`` (all zero when ``last_seq == 0``):
      'apply'; a larger seq raises envelope-gap; another ``prev_hh`` raises envelope-fork.

    ``known_hh_for_seq`` is the ``hh`` recorded for ``header.batch_seq`` (or a function of the sequence
    returning it), None when the agent never applied that sequence or no longer remembers it.
    """
    seq = header.batch_seq
    if last_seq < 0:
        raise ValueError("last_seq must be >= 0")
    if seq <= last_seq:
        known = known_hh_for_seq(seq) if callable(known_hh_for_seq) else known_hh_for_seq
        if known is not None and consteq(bytes(known), header.hh):
            return "duplicate"
        if header.kind == "snapshot" and seq == last_seq:
            # a resync: the platform's state as of the last applied sequence, sealed afresh. Applying it
            # reproduces the state the table already should have, so even a replayed copy cannot move
            # the table in time; an older snapshot could, and is refused below.
            return "apply"
        raise E.Replayed(f"seq {seq} <= last applied {last_seq} and hh {header.hh_hex} "
                         f"{'differs from the applied batch' if known is not None else 'is not on record'}")
    if header.kind == "snapshot":
        return "apply"
    if seq > last_seq + 1:
        raise E.SequenceGap(f"seq {seq} after last applied {last_seq}: {seq - last_seq - 1} batch(es) missing")
    expected = ZERO_HH if last_seq == 0 else last_hh
    if expected is None:
        raise ValueError("last_hh is required when last_seq > 0")
    if not consteq(header.prev_hh, bytes(expected)):
        raise E.ChainFork(f"seq {seq} continues {header.prev_hh.hex()}, last applied is {bytes(expected).hex()}")
    return "apply"
