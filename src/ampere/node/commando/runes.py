"""Runes: bearer tokens with restrictions, exactly as Core Lightning makes and checks them (ccan/rune,
lightningd/runes.c), so a rune from one works with the other for the same hsm_secret.

A rune is base64url(authcode || restrictions).  The authcode is the SHA-256 *internal state* after hashing the
master secret and then each restriction, each followed by SHA-256's own end padding ("We pad between fields with
something identical to the SHA end marker"): anyone can add a restriction to a rune (continue the hash), nobody
can remove one.  The master secret is `makesecret("commando")` (runes came out of commando).  Restrictions are
`&`-separated; each is `|`-separated alternatives `FIELD COND VALUE` (`\\`, `|`, `&` escaped by `\\`); the first,
with an empty field name, carries the unique id (`=N`).
"""

from __future__ import annotations

import base64
import struct

CONDITIONS = "!=/^$~<>{}#"
_K = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]
_H0 = (0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19)
_M = 0xFFFFFFFF


class RuneError(ValueError):
    pass


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & _M


def _compress(state: tuple, block: bytes) -> tuple:
    """FIPS 180-4 SHA-256 compression of one 64-byte block (hashlib does not expose the midstate)."""
    w = list(struct.unpack(">16I", block))
    for i in range(16, 64):
        s0 = _rotr(w[i - 15], 7) ^ _rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
        s1 = _rotr(w[i - 2], 17) ^ _rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
        w.append((w[i - 16] + s0 + w[i - 7] + s1) & _M)
    a, b, c, d, e, f, g, h = state
    for i in range(64):
        t1 = (h + (_rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)) + ((e & f) ^ (~e & g)) + _K[i] + w[i]) & _M
        t2 = ((_rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) & _M
        a, b, c, d, e, f, g, h = (t1 + t2) & _M, a, b, c, (d + t1) & _M, e, f, g
    return tuple((x + y) & _M for x, y in zip(state, (a, b, c, d, e, f, g, h)))


class _Sha:
    """A SHA-256 stream whose state can be read and resumed at block boundaries."""

    def __init__(self, state: tuple = _H0, nbytes: int = 0) -> None:
        self.state, self.nbytes, self.buf = state, nbytes, b""

    def update(self, data: bytes) -> None:
        self.buf += data
        self.nbytes += len(data)
        while len(self.buf) >= 64:
            self.state, self.buf = _compress(self.state, self.buf[:64]), self.buf[64:]

    def endmarker(self) -> None:
        # rune_sha256_endmarker: 0x80, zeros up to 8 bytes before a block end, then the bit length (big-endian).
        bits = self.nbytes * 8
        self.update(b"\x80" + bytes((128 - 8 - (self.nbytes % 64) - 1) % 64))
        self.update(struct.pack(">Q", bits))

    def copy(self) -> "_Sha":
        s = _Sha(self.state, self.nbytes)
        s.buf = self.buf
        return s


Altern = tuple[str, str, str]   # (fieldname, condition, value)


def _escape(value: str) -> str:
    return "".join("\\" + ch if ch in "\\|&" else ch for ch in value)


def encode_restriction(alterns: list[Altern]) -> str:
    return "|".join(f + c + _escape(v) for f, c, v in alterns)


def fieldname_len(text: str) -> int:
    # rune_altern_fieldname_len: up to the first punctuation character other than '_'.
    for i, ch in enumerate(text):
        if ch.isascii() and not ch.isalnum() and not ch.isspace() and ch != "_" and 32 < ord(ch) < 127:
            return i
    return len(text)


def decode_restrictions(text: str) -> list[list[Altern]]:
    restrs: list[list[Altern]] = []
    pos = 0
    while pos < len(text):
        alterns: list[Altern] = []
        while True:
            n = fieldname_len(text[pos:])
            field = text[pos:pos + n]
            pos += n
            if pos >= len(text) or text[pos] not in CONDITIONS:
                raise RuneError("invalid condition")
            cond = text[pos]
            pos += 1
            value, more = [], False
            while pos < len(text):
                ch = text[pos]
                pos += 1
                if ch == "|":
                    more = True
                    break
                if ch == "&":
                    break
                if ch == "\\":
                    if pos >= len(text):
                        raise RuneError("dangling escape")
                    ch = text[pos]
                    pos += 1
                value.append(ch)
            alterns.append((field, cond, "".join(value)))
            if not more:
                break
        restrs.append(alterns)
    return restrs


class Rune:
    def __init__(self, sha: _Sha, restrictions: list[list[Altern]]) -> None:
        self.sha, self.restrictions = sha, restrictions

    @property
    def unique_id(self) -> str | None:
        if self.restrictions and len(self.restrictions[0]) == 1 and self.restrictions[0][0][0] == "":
            return self.restrictions[0][0][2].split("-", 1)[0]
        return None

    def add(self, alterns: list[Altern]) -> None:
        if any(f == "" for f, _, _ in alterns) and (self.restrictions or len(alterns) != 1):
            raise RuneError("the unique id must be the first restriction, alone")
        self.restrictions.append(alterns)
        self.sha.update(encode_restriction(alterns).encode())
        self.sha.endmarker()

    def authcode(self) -> bytes:
        return struct.pack(">8I", *self.sha.state)

    def to_base64(self) -> str:
        body = "&".join(encode_restriction(r) for r in self.restrictions).encode()
        return base64.urlsafe_b64encode(self.authcode() + body).decode()


def master_rune(secret: bytes) -> Rune:
    sha = _Sha()
    sha.update(secret)
    sha.endmarker()
    return Rune(sha, [])


def rune_from_base64(text: str) -> tuple[bytes, list[list[Altern]]]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise RuneError("should be base64 string") from None
    if len(raw) < 32:
        raise RuneError("should be base64 string")
    try:
        restrictions = decode_restrictions(raw[32:].decode())
    except (UnicodeDecodeError, RuneError):
        raise RuneError("should be base64 string") from None
    return raw[:32], restrictions


def derive(master: Rune, restrictions: list[list[Altern]]) -> Rune:
    r = Rune(master.sha.copy(), [])
    for alterns in restrictions:
        r.add(alterns)
    return r


def is_ours(master: Rune, text: str) -> tuple[Rune | None, str | None]:
    """The rune if `master` made it (its authcode matches its restrictions), else (None, reason)."""
    authcode, restrictions = rune_from_base64(text)
    r = derive(master, restrictions)
    if r.authcode() != authcode:
        return None, "Not derived from master"
    return r, None


def check_altern(alt: Altern, value: str | int | None) -> str | None:
    """None if the alternative holds for the field's value (None: field missing), else CLN's complaint."""
    field, cond, want = alt
    if cond == "#":
        return None
    if cond == "!":
        return None if value is None else f"{field} is present"
    if value is None:
        return f"{field} not present"
    if cond in "<>":
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{field} is not an integer field"
        try:
            limit = int(want, 10)
        except ValueError:
            return f"{want} is not a valid integer"
        ok = value < limit if cond == "<" else value > limit
        return None if ok else f"{field} {'is greater or equal to' if cond == '<' else 'is less or equal to'} {want}"
    s = str(value)
    checks = {"=": (s == want, "is not equal to"), "/": (s != want, "is equal to"),
              "^": (s.startswith(want), "does not start with"), "$": (s.endswith(want), "does not end with"),
              "~": (want in s, "does not contain"), "{": (s < want, "is equal to or ordered after"),
              "}": (s > want, "is equal to or ordered before")}
    ok, complaint = checks[cond]
    return None if ok else f"{field} {complaint} {want}"


ENGLISH = {"=": "equal to", "/": "unequal to", "^": "starts with", "$": "ends with", "~": "contains",
           "<": "<", ">": ">", "{": "sorts before", "}": "sorts after"}


def altern_english(alt: Altern) -> str:
    field, cond, value = alt
    if cond == "!":
        return f"{field} is missing"
    if cond == "#":
        return f"comment: {field} {value}"
    return f"{field} {ENGLISH[cond]} {value}"
