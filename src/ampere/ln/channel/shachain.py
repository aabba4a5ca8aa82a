"""The receiver's compact storage of the peer's per-commitment secrets (BOLT 3 shachain).

BOLT #3: "The receiver of a series of secrets can store them compactly in an array of 49 (value,index)
pairs. Because, for a given secret on a 2^X boundary, all secrets up to the next 2^X boundary can be
derived; and secrets are always received in descending order starting at 0xFFFFFFFFFFFF."

`ShachainStore` is an immutable value: `insert` returns a new store (the channel state machine keeps the
old one until the new one is persisted). `to_bytes`/`from_bytes` give a stable persisted form.
"""
from __future__ import annotations

from dataclasses import dataclass

from ampere.ln.channel.keys import MAX_SECRET_INDEX, derive_secret

__all__ = ["ShachainError", "ShachainStore", "where_to_put_secret"]

_BUCKETS = 49


class ShachainError(ValueError):
    """A secret that does not derive the ones received before it, or an index out of order or unknown."""


def where_to_put_secret(index: int) -> int:
    """BOLT 3 `where_to_put_secret(I)`, a.k.a. count trailing zeros (48 for I = 0, the seed itself)."""
    for b in range(48):
        if (index >> b) & 1:
            return b
    return 48


@dataclass(frozen=True)
class _Entry:
    index: int
    secret: bytes


@dataclass(frozen=True)
class ShachainStore:
    """Known secrets, one per bucket: bucket b holds the latest secret whose index has b trailing zeros."""

    buckets: tuple[_Entry | None, ...] = (None,) * _BUCKETS
    # Index of the last secret inserted; None while empty. Secrets must arrive in decrementing order.
    last_index: int | None = None

    def insert(self, index: int, secret: bytes) -> ShachainStore:
        """Store `secret` for `index`, after checking it derives every secret already held.

        BOLT #3: "A double-check, that all previous secrets derive correctly, is needed; if this check fails,
        the secrets were not generated from the same seed".
        """
        if not 0 <= index <= MAX_SECRET_INDEX:
            raise ShachainError(f"secret index {index} out of range")
        if not isinstance(secret, (bytes, bytearray)) or len(secret) != 32:
            raise ShachainError("per-commitment secret must be 32 bytes")
        if self.last_index is not None and index != self.last_index - 1:
            raise ShachainError(f"secret index {index} received out of order (expected {self.last_index - 1})")
        bucket = where_to_put_secret(index)
        for b in range(bucket):
            known = self.buckets[b]
            if known is not None and derive_secret(secret, bucket, known.index) != known.secret:
                raise ShachainError(f"the secret for index {index} does not derive the secret for index {known.index}")
        buckets = list(self.buckets)
        buckets[bucket] = _Entry(index, bytes(secret))
        return ShachainStore(tuple(buckets), index)

    def get_secret(self, index: int) -> bytes:
        """The secret for `index`, derived from the stored ones (BOLT 3 `derive_old_secret`)."""
        for b, entry in enumerate(self.buckets):
            if entry is None:
                continue
            # BOLT #3: "Mask off the non-zero prefix of the index."
            mask = ~((1 << b) - 1)
            if index & mask == entry.index:
                return derive_secret(entry.secret, b, index)
        raise ShachainError(f"secret for index {index} has not been received")

    def __len__(self) -> int:
        """How many secrets have been received (all of them are derivable)."""
        return 0 if self.last_index is None else MAX_SECRET_INDEX - self.last_index + 1

    # --- persistence: count(1) then per stored bucket: bucket(1) index(6) secret(32) -------------------

    def to_bytes(self) -> bytes:
        # The store is immutable and the channel record encodes it on every step: encode it once (kept in the
        # instance dict; `buckets` and `last_index` alone make its value, equality and hash).
        cached = self.__dict__.get("_encoded")
        if cached is not None:
            return cached
        stored = [(b, e) for b, e in enumerate(self.buckets) if e is not None]
        out = bytearray([len(stored)])
        for b, e in stored:
            out += bytes([b]) + e.index.to_bytes(6, "big") + e.secret
        encoded = bytes(out)
        object.__setattr__(self, "_encoded", encoded)
        return encoded

    def to_hex(self) -> str:
        cached = self.__dict__.get("_hex")
        if cached is None:
            cached = self.to_bytes().hex()
            object.__setattr__(self, "_hex", cached)
        return cached

    @classmethod
    def from_bytes(cls, data: bytes) -> ShachainStore:
        if not data:
            raise ShachainError("empty shachain encoding")
        count = data[0]
        if len(data) != 1 + 39 * count:
            raise ShachainError("truncated or oversized shachain encoding")
        buckets: list[_Entry | None] = [None] * _BUCKETS
        last_index = None
        for i in range(count):
            rec = data[1 + 39 * i:1 + 39 * (i + 1)]
            b, index, secret = rec[0], int.from_bytes(rec[1:7], "big"), rec[7:]
            if b >= _BUCKETS or where_to_put_secret(index) != b or buckets[b] is not None:
                raise ShachainError("inconsistent shachain encoding")
            buckets[b] = _Entry(index, secret)
            last_index = index if last_index is None else min(last_index, index)
        return cls(tuple(buckets), last_index)
