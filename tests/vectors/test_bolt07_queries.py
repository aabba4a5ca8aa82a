"""BOLT 7 extended gossip queries: the spec's test vectors (extended-queries.json, copied into
tests/vectors/bolt07/).

Every vector's hex decodes to the message its JSON describes, and re-encodes to the same bytes.
Two of the encodings in the vectors use zlib (encoding type 1), which the spec now retired:
"`1`: Previously used for zlib compression, this encoding MUST NOT be used."  For those, the test
checks that our decoders refuse the encoding with a typed QueryError (action WARN) -- and, with
zlib here in the test, that the vector's bytes really are the array it describes, so the vector
is read correctly rather than skipped.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest

from ampere.primitives.bigsize import decode_bigsize
from ampere.ln.gossip.queries import (
    QueryError, WANT_CHECKSUMS, WANT_TIMESTAMPS, decode_query_flags, decode_short_ids, decode_timestamps,
    encode_query_flags, encode_short_ids, encode_timestamps,
)
from ampere.wire.errors import Action
from ampere.wire.messages import (
    ChannelUpdateChecksums, QueryChannelRange, QueryShortChannelIds, ReplyChannelRange, decode_message,
)
from ampere.wire.types import ShortChannelId

VECTORS = json.loads((Path(__file__).parent / "bolt07" / "extended-queries.json").read_text())
CLASSES = {"QueryChannelRange": QueryChannelRange, "ReplyChannelRange": ReplyChannelRange,
           "QueryShortChannelIds": QueryShortChannelIds}


def _scids(texts: list[str]) -> list[ShortChannelId]:
    return [ShortChannelId.from_str(t) for t in texts]


def _check_scid_array(encoded: bytes, spec: dict) -> None:
    expected = _scids(spec["array"])
    if spec["encoding"] == "UNCOMPRESSED":
        assert encoded[0] == 0
        assert decode_short_ids(encoded) == expected
        assert encode_short_ids(expected) == encoded
    else:
        assert spec["encoding"] == "COMPRESSED_ZLIB" and encoded[0] == 1
        with pytest.raises(QueryError) as info:
            decode_short_ids(encoded)
        assert info.value.action is Action.WARN
        raw = zlib.decompress(encoded[1:])
        assert [ShortChannelId(int.from_bytes(raw[i:i + 8], "big")) for i in range(0, len(raw), 8)] == expected


@pytest.mark.parametrize("vector", VECTORS, ids=[f"{i}-{v['msg']['type']}" for i, v in enumerate(VECTORS)])
def test_extended_queries_vector(vector: dict) -> None:
    raw = bytes.fromhex(vector["hex"])
    spec = vector["msg"]
    msg = decode_message(raw)
    assert isinstance(msg, CLASSES[spec["type"]])
    # Every vector re-encodes byte for byte, whatever its inner encodings.
    assert msg.to_bytes() == raw
    assert msg.chain_hash.hex() == spec["chainHash"]

    if spec["type"] == "QueryChannelRange":
        assert (msg.first_blocknum, msg.number_of_blocks) == (spec["firstBlockNum"], spec["numberOfBlocks"])
        records = spec["tlvStream"]["records"]
        if records:
            assert records == ["WANT_TIMESTAMPS | WANT_CHECKSUMS"]
            assert msg.tlvs.query_option == WANT_TIMESTAMPS | WANT_CHECKSUMS
        else:
            assert msg.tlvs.query_option is None

    elif spec["type"] == "ReplyChannelRange":
        assert (msg.first_blocknum, msg.number_of_blocks) == (spec["firstBlockNum"], spec["numberOfBlocks"])
        assert msg.sync_complete == spec["complete"]
        _check_scid_array(msg.encoded_short_ids, spec["shortChannelIds"])
        if "timestamps" in spec:
            pairs = [(t["timestamp1"], t["timestamp2"]) for t in spec["timestamps"]["timestamps"]]
            rec = msg.tlvs.timestamps_tlv
            if spec["timestamps"]["encoding"] == "UNCOMPRESSED":
                assert decode_timestamps(rec) == pairs
                assert encode_timestamps(pairs) == rec
            else:
                with pytest.raises(QueryError):
                    decode_timestamps(rec)
                raw_ts = zlib.decompress(rec.encoded_timestamps)
                assert [(int.from_bytes(raw_ts[i:i + 4], "big"), int.from_bytes(raw_ts[i + 4:i + 8], "big"))
                        for i in range(0, len(raw_ts), 8)] == pairs
        else:
            assert msg.tlvs.timestamps_tlv is None
        if "checksums" in spec:
            assert list(msg.tlvs.checksums_tlv) == [
                ChannelUpdateChecksums(checksum_node_id_1=c["checksum1"], checksum_node_id_2=c["checksum2"])
                for c in spec["checksums"]["checksums"]]
        else:
            assert msg.tlvs.checksums_tlv is None

    else:  # QueryShortChannelIds
        _check_scid_array(msg.encoded_short_ids, spec["shortChannelIds"])
        records = spec["tlvStream"]["records"]
        if not records:
            assert msg.tlvs.query_flags is None
            return
        (flags_spec,) = records
        rec = msg.tlvs.query_flags
        if flags_spec["encoding"] == "UNCOMPRESSED":
            assert decode_query_flags(rec) == flags_spec["array"]
            assert encode_query_flags(flags_spec["array"]) == rec
        else:
            assert rec.encoding_type == 1
            with pytest.raises(QueryError):
                decode_query_flags(rec)
            data, pos, flags = zlib.decompress(rec.encoded_query_flags), 0, []
            while pos < len(data):
                value, pos = decode_bigsize(data, pos)
                flags.append(value)
            assert flags == flags_spec["array"]


def test_vectors_cover_every_case() -> None:
    """The file has the 10 vectors of the spec: a change in it should be looked at."""
    assert len(VECTORS) == 10
    encodings = {v["msg"].get("shortChannelIds", {}).get("encoding") for v in VECTORS}
    assert encodings == {None, "UNCOMPRESSED", "COMPRESSED_ZLIB"}
