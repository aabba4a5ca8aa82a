"""node/payments/listing.page: the one pagination of CLN's index/start/limit lists."""

from dataclasses import dataclass

from ampere.node.payments.listing import page


@dataclass
class R:
    created_index: int
    updated_index: int | None = None


RECS = [R(3, 5), R(1, None), R(2, 7), R(4, 0), R(5, 6)]


def test_created_order_start_and_limit():
    assert [r.created_index for r in page(RECS, None, None, None)] == [1, 2, 3, 4, 5]
    assert [r.created_index for r in page(RECS, "created", 2, None)] == [2, 3, 4, 5]
    assert [r.created_index for r in page(RECS, "created", 2, 2)] == [2, 3]
    assert page(RECS, "created", 6, None) == []
    assert page(RECS, "created", None, 0) == []


def test_updated_order_leaves_out_never_updated():
    assert [r.updated_index for r in page(RECS, "updated", None, None)] == [5, 6, 7]
    assert [r.updated_index for r in page(RECS, "updated", 6, 1)] == [6]
