"""``OrderTable.on_request_raw`` tracks exactly what ``on_request`` tracks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from wiresens.oms import OrderTable
from wiresens.records import RecordKind, new_record

FIELDS = (
    "cl_ord_id",
    "policy",
    "account",
    "symbol",
    "side",
    "qty",
    "price",
    "order_type",
    "tif",
    "orig_cl_ord_id",
    "status",
)


@settings(max_examples=200, deadline=None)
@given(
    reqs=st.lists(
        st.tuples(
            st.sampled_from(
                [RecordKind.ORDER_NEW, RecordKind.ORDER_CANCEL, RecordKind.ORDER_REPLACE]
            ),
            st.integers(1, 6),
            st.integers(0, 6),
            st.integers(0, 300),
            st.integers(0, 2**40),
        ),
        max_size=30,
    )
)
def test_raw_and_numpy_paths_agree(reqs: list[tuple[RecordKind, int, int, int, int]]) -> None:
    a, b = OrderTable(), OrderTable()
    for kind, cl, orig, policy, px in reqs:
        rec = new_record(kind)
        rec["cl_ord_id"], rec["orig_cl_ord_id"], rec["policy"], rec["account"] = (
            cl,
            orig,
            policy,
            policy % 3,
        )
        rec["symbol"], rec["side"], rec["qty"], rec["price"] = (
            1 + policy % 4,
            1 + cl % 2,
            10 + cl,
            px,
        )
        rec["order_type"], rec["tif"] = 1 + orig % 3, cl % 4
        assert a.on_request(rec[0]) == b.on_request_raw(memoryview(rec).cast("B"))
    assert sorted(a.open) == sorted(b.open)
    for cid, order in a.open.items():
        other = b.open[cid]
        assert all(getattr(order, f) == getattr(other, f) for f in FIELDS), (order, other)
