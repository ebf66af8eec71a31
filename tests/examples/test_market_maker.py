"""The example market maker, driven through the policy API with synthetic books and fills."""

from __future__ import annotations

import math
import random
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from wiresens.config import load_policy_class
from wiresens.instruments import Instrument, InstrumentTable
from wiresens.policy import BufferSink, PolicyContext, PolicyObject, TopOfBook
from wiresens.records import ExecStatus, ExecType, RecordKind, Side, new_record

REPO = Path(__file__).resolve().parents[2]
MarketMaker = load_policy_class("examples/market_maker.py:MarketMaker", REPO)
Params = MarketMaker.Params

TICK = 1_000_000  # 0.01
QTY = 10_000_000  # 0.1
MAX_POS = 30_000_000  # 0.3
SYM = 1  # InstrumentTable indexes from 1
BTC = Instrument(symbol="BTCUSDT", base="BTC", quote="USDT", status="TRADING", tick_size=TICK)


class MiniVenue:
    """Acknowledges every request at once and fills resting quotes the market trades through."""

    def __init__(self, policy: PolicyObject, sink: BufferSink) -> None:
        self.policy = policy
        self.sink = sink
        self.resting: dict[int, list[int]] = {}  # cl_ord_id -> [side, price, qty, filled]
        self.trade_id = 0
        self.requests: list[Any] = []

    def report(self, cid: int, status: ExecStatus, exec_type: ExecType, **fields: int) -> None:
        r = new_record(RecordKind.EXECUTION_REPORT)[0]
        r["cl_ord_id"], r["policy"], r["status"], r["exec_type"] = (
            cid,
            self.policy.policy_id,
            status,
            exec_type,
        )
        side, price, qty, filled = self.resting.get(cid, [Side.BUY, 0, 0, 0])
        r["side"], r["price"], r["qty"], r["cum_qty"] = side, price, qty, filled
        r["symbol"] = SYM
        for k, v in fields.items():
            r[k] = v
        self.policy.deliver_execution(r)

    def process(self) -> None:
        """Answer requests until the policy stops sending (it requotes on reports)."""
        while self.sink.count:
            for req in self.sink.drain():
                self.requests.append(req)
                kind, cid, orig = (
                    int(req["kind"]),
                    int(req["cl_ord_id"]),
                    int(req["orig_cl_ord_id"]),
                )
                if (
                    kind in (RecordKind.ORDER_CANCEL, RecordKind.ORDER_REPLACE)
                    and orig in self.resting
                ):
                    self.report(orig, ExecStatus.CANCELED, ExecType.CANCELED)
                    del self.resting[orig]
                if kind in (RecordKind.ORDER_NEW, RecordKind.ORDER_REPLACE):
                    self.resting[cid] = [int(req["side"]), int(req["price"]), int(req["qty"]), 0]
                    self.report(cid, ExecStatus.NEW, ExecType.NEW)

    def trade_through(self, bid: int, ask: int) -> None:
        """The market now quotes bid/ask: resting quotes on the wrong side of it fill fully."""
        for cid, (side, price, qty, filled) in list(self.resting.items()):
            crossed = price >= ask if side == Side.BUY else price <= bid
            if not crossed:
                continue
            self.trade_id += 1
            self.resting[cid][3] = qty
            self.report(
                cid,
                ExecStatus.FILLED,
                ExecType.TRADE,
                trade_id=self.trade_id,
                last_qty=qty - filled,
                last_px=price,
                cum_qty=qty,
            )
            del self.resting[cid]

    def quotes(self) -> dict[int, tuple[int, int]]:
        """Resting quotes by side: {side: (price, qty)}."""
        return {side: (price, qty) for side, price, qty, _ in self.resting.values()}


def setup(**params: Any) -> tuple[Any, BufferSink, MiniVenue, TopOfBook]:
    kw: dict[str, Any] = {"qty": QTY, "max_position": MAX_POS, "skew_bps": 0}
    kw.update(params)
    sink = BufferSink()
    table = InstrumentTable([BTC])
    ctx = PolicyContext(policy_id=1, name="mm", sink=sink, instruments=table, symbols=[SYM])
    mm = MarketMaker(Params(**kw), ctx)
    mm.start()
    return mm, sink, MiniVenue(mm, sink), TopOfBook()


def tick(mm: Any, venue: MiniVenue, book: TopOfBook, bid: int, ask: int) -> None:
    venue.trade_through(bid, ask)
    venue.process()
    book.bid_px, book.ask_px, book.bid_qty, book.ask_qty = bid, ask, QTY, QTY
    mm.deliver_book(SYM, book)
    venue.process()


def expected_quotes(
    bid: int, ask: int, pos: int, spread_bps: int, skew_bps: int
) -> tuple[int, int]:
    """The documented quote formula, in exact rationals."""
    mid = Fraction(bid + ask, 2)
    raw_bid = mid - mid * spread_bps / 20_000 - mid * skew_bps * pos / (10_000 * MAX_POS)
    raw_ask = mid + mid * spread_bps / 20_000 - mid * skew_bps * pos / (10_000 * MAX_POS)
    q_bid = min(math.floor(raw_bid / TICK) * TICK, ask - TICK)
    q_ask = max(math.ceil(raw_ask / TICK) * TICK, bid + TICK)
    return q_bid, q_ask


def test_params_validated() -> None:
    with pytest.raises(ValueError, match="positive"):
        Params(qty=0, max_position=1)
    assert Params(qty=1, max_position=1).spread_bps == 10


def test_first_quotes_around_the_mid() -> None:
    mm, _, venue, book = setup(spread_bps=10)
    bid, ask = 100_00_000_000, 100_10_000_000
    tick(mm, venue, book, bid, ask)
    q = venue.quotes()
    assert q[Side.BUY] == (expected_quotes(bid, ask, 0, 10, 0)[0], QTY)
    assert q[Side.SELL] == (expected_quotes(bid, ask, 0, 10, 0)[1], QTY)
    assert q[Side.BUY][0] == 99_99_000_000 and q[Side.SELL][0] == 100_11_000_000


def test_requotes_only_when_the_target_moves_enough() -> None:
    mm, _, venue, book = setup(spread_bps=10, requote_ticks=3)
    tick(mm, venue, book, 100_00_000_000, 100_10_000_000)
    sent = len(venue.requests)
    tick(mm, venue, book, 100_02_000_000, 100_12_000_000)  # targets move 2 ticks
    assert len(venue.requests) == sent
    tick(mm, venue, book, 100_05_000_000, 100_15_000_000)  # 5 ticks from the resting quotes
    new = venue.requests[sent:]
    assert [int(r["kind"]) for r in new] == [RecordKind.ORDER_REPLACE] * 2
    q = venue.quotes()
    want = expected_quotes(100_05_000_000, 100_15_000_000, 0, 10, 0)
    assert (q[Side.BUY][0], q[Side.SELL][0]) == want
    assert mm.requotes == 2


def test_inventory_skews_and_limits_quotes() -> None:
    mm, _, venue, book = setup(spread_bps=20, skew_bps=10)
    bid, ask = 100_00_000_000, 100_10_000_000
    tick(mm, venue, book, bid, ask)
    for fills in range(1, 4):
        # The market drops through our bid: it fills, we are longer and quote lower.
        bid_q = venue.quotes()[Side.BUY][0]
        tick(mm, venue, book, bid_q - 20 * TICK, bid_q - 10 * TICK)
        assert mm.position(SYM) == fills * QTY
        bid, ask = book.bid_px, book.ask_px
        q = venue.quotes()
        want_bid, want_ask = expected_quotes(bid, ask, mm.position(SYM), 20, 10)
        assert q[Side.SELL] == (want_ask, QTY)
        unskewed = expected_quotes(bid, ask, 0, 20, 0)
        assert want_ask < unskewed[1]
        if fills < 3:
            assert q[Side.BUY] == (want_bid, QTY)
        else:
            assert Side.BUY not in q  # at max_position: no bid at all
    assert mm.positions.get(1, SYM).avg_px > 0


def test_never_exceeds_limits_on_a_random_walk() -> None:
    rng = random.Random(20240611)
    mm, _, venue, book = setup(spread_bps=8, skew_bps=6, requote_ticks=1)
    mid = 100_00_000_000
    for _ in range(600):
        mid += rng.choice((-3, -2, -1, 0, 1, 2, 3)) * TICK * rng.choice((1, 1, 1, 8))
        half = rng.randint(1, 6) * TICK
        tick(mm, venue, book, mid - half, mid + half)
        pos = mm.position(SYM)
        assert -MAX_POS <= pos <= MAX_POS
        open_orders = list(mm.open_orders)
        by_side = {s: [o for o in open_orders if o.side == s] for s in (Side.BUY, Side.SELL)}
        assert len(by_side[Side.BUY]) <= 1 and len(by_side[Side.SELL]) <= 1
        buys = sum(o.leaves_qty for o in by_side[Side.BUY])
        sells = sum(o.leaves_qty for o in by_side[Side.SELL])
        assert pos + buys <= MAX_POS and pos - sells >= -MAX_POS
        q = venue.quotes()
        if Side.BUY in q:
            assert q[Side.BUY][0] < book.ask_px
        if Side.SELL in q:
            assert q[Side.SELL][0] > book.bid_px
        if Side.BUY in q and Side.SELL in q:
            assert q[Side.BUY][0] < q[Side.SELL][0]
    fills = mm.positions.get(1, SYM).fills
    assert fills > 20  # the walk did trade through the quotes
    p = mm.positions.get(1, SYM)
    assert p.qty == p.bought - p.sold


def test_stop_cancels_everything() -> None:
    mm, _, venue, book = setup()
    tick(mm, venue, book, 100_00_000_000, 100_10_000_000)
    assert len(venue.resting) == 2
    mm.stop()
    venue.process()
    assert venue.resting == {} and len(mm.open_orders) == 0


def test_waits_for_acks_before_requoting() -> None:
    mm, sink, _, book = setup(requote_ticks=1)
    book.bid_px, book.ask_px = 100_00_000_000, 100_10_000_000
    mm.deliver_book(SYM, book)
    assert sink.count == 2
    book.bid_px, book.ask_px = 101_00_000_000, 101_10_000_000
    mm.deliver_book(SYM, book)  # both quotes still PENDING_NEW: nothing more is sent
    assert sink.count == 2


def _reject(mm: Any, cid: int, reason: int) -> None:
    r = new_record(RecordKind.EXECUTION_REPORT)[0]
    r["cl_ord_id"], r["policy"], r["symbol"] = cid, mm.policy_id, SYM
    r["status"], r["exec_type"], r["reason"] = ExecStatus.REJECTED, ExecType.REJECTED, reason
    mm.deliver_execution(r)


def test_a_rejected_quote_backs_off_instead_of_looping() -> None:
    from wiresens.risk import RejectReason

    now = [1_000_000_000]
    sink = BufferSink()
    ctx = PolicyContext(
        policy_id=1,
        name="mm",
        sink=sink,
        instruments=InstrumentTable([BTC]),
        symbols=[SYM],
        clock=lambda: now[0],
    )
    mm = MarketMaker(Params(qty=QTY, max_position=MAX_POS, reject_backoff_ms=100), ctx)
    mm.start()
    book = TopOfBook(100_00_000_000, QTY, 100_10_000_000, QTY)
    mm.deliver_book(SYM, book)
    bid_id = next(int(r["cl_ord_id"]) for r in sink.drain() if r["side"] == Side.BUY)

    def buys() -> int:
        return sum(1 for r in sink.drain() if r["side"] == Side.BUY)

    # A reject that would repeat (the exchange's filters): no new bid on the report...
    _reject(mm, bid_id, RejectReason.MIN_NOTIONAL)
    assert buys() == 0
    # ...nor on the next books within the back-off,
    for i in range(5):
        now[0] += 19_000_000
        book.bid_px += TICK * (i % 2)
        mm.deliver_book(SYM, book)
    assert buys() == 0 and mm.rejects == 1
    # then one, on the first book after it.
    now[0] += 10_000_000
    book.bid_px += TICK
    mm.deliver_book(SYM, book)
    sent = [r for r in sink.drain() if r["side"] == Side.BUY]
    assert len(sent) == 1
    # Rejected again: the back-off doubles (200 ms).
    _reject(mm, int(sent[0]["cl_ord_id"]), RejectReason.MIN_NOTIONAL)
    now[0] += 150_000_000
    book.bid_px -= TICK
    mm.deliver_book(SYM, book)
    assert buys() == 0
    now[0] += 60_000_000
    book.bid_px += TICK
    mm.deliver_book(SYM, book)
    sent = [r for r in sink.drain() if r["side"] == Side.BUY]
    assert len(sent) == 1
    # A replace that lost the race with a fill (unknown order) is no loop: re-quote at once.
    _reject(mm, int(sent[0]["cl_ord_id"]), RejectReason.UNKNOWN_ORDER)
    assert buys() == 1 and mm.rejects == 2


def test_backoff_zero_requotes_at_once() -> None:
    from wiresens.risk import RejectReason

    mm, sink, _, book = setup(reject_backoff_ms=0)
    book.bid_px, book.ask_px, book.bid_qty, book.ask_qty = 100_00_000_000, 100_10_000_000, 1, 1
    mm.deliver_book(SYM, book)
    bid_id = next(int(r["cl_ord_id"]) for r in sink.drain() if r["side"] == Side.BUY)
    _reject(mm, bid_id, RejectReason.MIN_NOTIONAL)
    assert sum(1 for r in sink.drain() if r["side"] == Side.BUY) == 1
