"""Price-time priority matching engine of the venue (plain domain code, no I/O).

Two kinds of liquidity share one book per symbol:

* **market liquidity** - anonymous aggregated levels fed by the replay or the
  synthetic market (:meth:`Engine.set_market_level`). A user order that takes
  consumes them; a consumed level stays consumed until the market next sets
  that price, when the market's quantity replaces it. At one price the market
  quantity is ahead of user orders (it was displayed first).
* **user orders** - orders placed by venue accounts, in price-time priority.
  Users trade with each other like on the exchange (self-trade prevention
  applies between orders of one account). A resting user order also fills,
  as maker at its own price, when the market *trades through* it (a market
  trade at a strictly worse price, :meth:`Engine.market_trade`) or when a
  market level moves across it (:meth:`Engine.set_market_level`).

The engine never raises for a business outcome: :meth:`Engine.place` and
:meth:`Engine.cancel` return the order or a :class:`Reject` carrying Binance's
code and message. Everything that happened is appended to :attr:`Engine.events`
(execution reports, balance changes, public trades) for the server, or the
back-tester, to drain. Changed price levels are added to every set registered
in :attr:`Book.listeners` and bump :attr:`Book.update_id`, which is how the
diff-depth streams keep Binance's ``U``/``u`` continuity.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from wiresens.fixedpoint import SCALE
from wiresens.instruments import Instrument

from .accounts import Account
from .filters import check_order

__all__ = [
    "STP_MODES",
    "BalanceEvent",
    "Book",
    "Engine",
    "ExecEvent",
    "Fill",
    "Order",
    "OrderRequest",
    "PublicTrade",
    "Reject",
]

STP_MODES = ("NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH")
FINAL = frozenset(("FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH", "REJECTED"))
_BIG = 1 << 62


class Reject(NamedTuple):
    """A refused request: Binance's error ``code`` and ``msg``."""

    code: int
    msg: str


INSUFFICIENT = Reject(-2010, "Account has insufficient balance for requested action.")
WOULD_TAKE = Reject(-2010, "Order would immediately match and take.")
UNKNOWN_ORDER = Reject(-2011, "Unknown order sent.")
DUPLICATE = Reject(-2010, "Duplicate order sent.")


@dataclass(slots=True)
class OrderRequest:
    """A new order, already parsed to fixed point (0 = absent)."""

    symbol: str
    side: str  # BUY | SELL
    type: str  # LIMIT | MARKET | LIMIT_MAKER
    quantity: int = 0
    price: int = 0
    time_in_force: str = "GTC"
    quote_order_qty: int = 0
    client_order_id: str = ""
    stp_mode: str = ""


@dataclass(slots=True)
class Fill:
    """One execution of an order."""

    price: int
    qty: int
    commission: int
    commission_asset: str
    trade_id: int
    is_maker: bool


@dataclass(slots=True, eq=False)
class Order:
    """A user order and its live state."""

    order_id: int
    client_order_id: str
    account: Account
    symbol: str
    side: str
    type: str
    time_in_force: str
    price: int
    orig_qty: int
    quote_order_qty: int
    stp_mode: str
    time_ms: int
    status: str = "NEW"
    executed_qty: int = 0
    cum_quote: int = 0
    update_ms: int = 0
    locked: int = 0
    lock_asset: str = ""
    fills: list[Fill] = field(default_factory=list)

    @property
    def is_buy(self) -> bool:
        return self.side == "BUY"

    @property
    def remaining(self) -> int:
        return self.orig_qty - self.executed_qty


@dataclass(slots=True)
class ExecEvent:
    """An execution report: the order's state right after ``exec_type`` happened."""

    order: Order
    exec_type: str  # NEW | TRADE | CANCELED | EXPIRED | TRADE_PREVENTION | REJECTED
    status: str
    executed_qty: int
    cum_quote: int
    fill: Fill | None
    ts_ms: int
    cancel_client_order_id: str = ""


@dataclass(slots=True)
class BalanceEvent:
    """Assets of ``account`` whose free/locked changed in one operation."""

    account: Account
    assets: tuple[str, ...]
    ts_ms: int


@dataclass(slots=True)
class PublicTrade:
    """A trade as the public ``@trade`` stream shows it."""

    symbol: str
    trade_id: int
    price: int
    qty: int
    buyer_is_maker: bool
    ts_ms: int
    buy_order_id: int = 0
    sell_order_id: int = 0


Event = ExecEvent | BalanceEvent | PublicTrade


class _Side:
    """One side of the book: sorted prices, market quantity and user queues per price."""

    __slots__ = ("is_bid", "market", "prices", "queues", "user_qty")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.prices: list[int] = []  # ascending on both sides
        self.market: dict[int, int] = {}
        self.queues: dict[int, deque[Order]] = {}
        self.user_qty: dict[int, int] = {}

    def best(self) -> int:
        """Best price, 0 when empty."""
        if not self.prices:
            return 0
        return self.prices[-1] if self.is_bid else self.prices[0]

    def ordered(self) -> list[int]:
        """Prices best first (a copy: callers mutate the book while walking)."""
        return self.prices[::-1] if self.is_bid else list(self.prices)

    def qty(self, price: int) -> int:
        return self.market.get(price, 0) + self.user_qty.get(price, 0)

    def _ensure(self, price: int) -> None:
        if price not in self.market and price not in self.queues:
            insort(self.prices, price)

    def _drop_if_empty(self, price: int) -> None:
        if price not in self.market and price not in self.queues:
            i = bisect_left(self.prices, price)
            if i < len(self.prices) and self.prices[i] == price:
                del self.prices[i]

    def set_market(self, price: int, qty: int) -> None:
        if qty > 0:
            self._ensure(price)
            self.market[price] = qty
        elif price in self.market:
            del self.market[price]
            self._drop_if_empty(price)

    def add_user(self, order: Order) -> None:
        p = order.price
        q = self.queues.get(p)
        if q is None:
            self._ensure(p)
            q = self.queues[p] = deque()
        q.append(order)
        self.user_qty[p] = self.user_qty.get(p, 0) + order.remaining

    def remove_user(self, order: Order, qty_left: int) -> None:
        """Take ``order`` (whose unfilled quantity in the book is ``qty_left``) off the book."""
        p = order.price
        q = self.queues[p]
        q.remove(order)
        self._reduce_user(p, qty_left)
        if not q:
            del self.queues[p]
            del self.user_qty[p]
            self._drop_if_empty(p)

    def _reduce_user(self, price: int, qty: int) -> None:
        self.user_qty[price] -= qty


class Book:
    """The book of one symbol; ``update_id`` counts level changes."""

    __slots__ = ("asks", "bids", "last_price", "listeners", "open", "rules", "symbol", "update_id")

    def __init__(self, rules: Instrument) -> None:
        self.rules = rules
        self.symbol = rules.symbol
        self.bids = _Side(True)
        self.asks = _Side(False)
        self.update_id = 1
        self.listeners: list[set[tuple[bool, int]]] = []
        self.open: dict[int, Order] = {}
        self.last_price = 0

    def touch(self, is_bid: bool, price: int) -> None:
        self.update_id += 1
        key = (is_bid, price)
        for s in self.listeners:
            s.add(key)

    def mid(self) -> int:
        b, a = self.bids.best(), self.asks.best()
        if b and a:
            return (b + a) // 2
        return b or a or self.last_price

    def levels(self, is_bid: bool, limit: int) -> list[tuple[int, int]]:
        """Top ``limit`` levels ``(price, qty)`` of one side, best first."""
        side = self.bids if is_bid else self.asks
        ps = side.prices[-limit:][::-1] if is_bid else side.prices[:limit]
        return [(p, side.qty(p)) for p in ps]

    def level_qty(self, is_bid: bool, price: int) -> int:
        return (self.bids if is_bid else self.asks).qty(price)


class Engine:
    """Matching engine over several symbols and the venue's accounts.

    Parameters
    ----------
    symbols:
        Rules of every symbol traded.
    default_stp:
        Self-trade prevention mode of orders that name none.
    """

    def __init__(
        self,
        symbols: dict[str, Instrument],
        default_stp: str = "EXPIRE_MAKER",
        keep_orders: int = 200_000,
    ) -> None:
        self.books = {s: Book(r) for s, r in symbols.items()}
        self.default_stp = default_stp
        self.events: list[Event] = []
        self.orders: dict[int, Order] = {}
        self.by_client: dict[tuple[int, str], Order] = {}
        self.trades: dict[int, list[tuple[Order, Fill]]] = {}
        self.fees: dict[str, int] = {}
        self.keep_orders = keep_orders
        self._next_order_id = 1
        self._next_trade_id = 1
        self._touched: dict[int, tuple[Account, set[str]]] = {}

    # -- queries ----------------------------------------------------------------------------
    def open_orders(self, account: Account, symbol: str | None = None) -> list[Order]:
        books = [self.books[symbol]] if symbol else list(self.books.values())
        return [o for b in books for o in b.open.values() if o.account is account]

    def find(self, account: Account, order_id: int, client_order_id: str) -> Order | None:
        if order_id:
            o = self.orders.get(order_id)
        else:
            o = self.by_client.get((account.id, client_order_id))
        return o if o is not None and o.account is account else None

    # -- user requests ----------------------------------------------------------------------
    def place(self, account: Account, req: OrderRequest, now_ms: int) -> Order | Reject:
        """Place an order; the filters are checked here too."""
        book = self.books.get(req.symbol)
        if book is None:
            return Reject(-1121, "Invalid symbol.")
        rules = book.rules
        is_market = req.type == "MARKET"
        bad = check_order(
            rules, is_market, req.price, req.quantity, req.quote_order_qty, book.mid()
        )
        if bad is not None:
            return Reject(-1013, f"Filter failure: {bad}")
        cid = req.client_order_id or f"venue{self._next_order_id}"
        if (account.id, cid) in self.by_client and self.by_client[
            (account.id, cid)
        ].status not in FINAL:
            return DUPLICATE
        is_buy = req.side == "BUY"
        opp = book.asks if is_buy else book.bids
        if req.type == "LIMIT_MAKER":
            best = opp.best()
            if best and (req.price >= best if is_buy else req.price <= best):
                return WOULD_TAKE
        # Lock what the order may spend.
        if is_buy:
            lock_asset = rules.quote
            if is_market:
                lock = req.quote_order_qty or self._walk_cost(opp, req.quantity)
                if lock < 0:
                    lock = _BIG  # not enough liquidity to size the cost: needs everything
            else:
                lock = -(-req.price * req.quantity // SCALE)
        else:
            lock_asset = rules.base
            lock = req.quantity or self._walk_sell_qty(opp, req.quote_order_qty, rules.step_size)
        bal = account.balance(lock_asset)
        if lock == _BIG:
            lock = bal.free
        elif bal.free < lock:
            return INSUFFICIENT
        stp = req.stp_mode or self.default_stp
        order = Order(
            order_id=self._next_order_id,
            client_order_id=cid,
            account=account,
            symbol=req.symbol,
            side=req.side,
            type=req.type,
            time_in_force="GTC" if req.type == "LIMIT_MAKER" else req.time_in_force,
            price=req.price,
            orig_qty=req.quantity,
            quote_order_qty=req.quote_order_qty,
            stp_mode=stp,
            time_ms=now_ms,
            update_ms=now_ms,
            locked=lock,
            lock_asset=lock_asset,
        )
        if is_market and not req.quantity:
            order.orig_qty = _BIG  # sized by quote: the quote budget stops it, see _after_take
        self._next_order_id += 1
        if len(self.orders) >= self.keep_orders:
            self._forget_old()
        self.orders[order.order_id] = order
        self.by_client[(account.id, cid)] = order
        bal.free -= lock
        bal.locked += lock
        self._touch_asset(account, lock_asset)
        self._exec(order, "NEW", None, now_ms)

        if req.time_in_force == "FOK" and not is_market and not self._fok_ok(order, opp):
            self._finish(order, "EXPIRED", "EXPIRED", now_ms)
        else:
            self._take(book, order, opp, now_ms)
            self._after_take(book, order, opp, now_ms)
        self._flush_balances(now_ms)
        return order

    def cancel(
        self,
        account: Account,
        symbol: str,
        order_id: int,
        client_order_id: str,
        now_ms: int,
        cancel_client_order_id: str = "",
    ) -> Order | Reject:
        """Cancel an open order by id or client id.

        ``cancel_client_order_id`` names the cancel request (Binance's
        ``newClientOrderId`` of a cancel): its execution report carries it as ``c``
        and the order's own id as ``C``.
        """
        book = self.books.get(symbol)
        if book is None:
            return Reject(-1121, "Invalid symbol.")
        o = self.find(account, order_id, client_order_id)
        if o is None or o.symbol != symbol or o.order_id not in book.open:
            return UNKNOWN_ORDER
        side = book.bids if o.is_buy else book.asks
        side.remove_user(o, o.remaining)
        del book.open[o.order_id]
        book.touch(o.is_buy, o.price)
        self._finish(o, "CANCELED", "CANCELED", now_ms)
        last = self.events[-1]
        if isinstance(last, ExecEvent):
            last.cancel_client_order_id = cancel_client_order_id or f"cancel{o.order_id}"
        self._flush_balances(now_ms)
        return o

    # -- market liquidity -------------------------------------------------------------------
    def set_market_level(
        self, symbol: str, is_bid: bool, price: int, qty: int, now_ms: int
    ) -> None:
        """The market says the level ``price`` now holds ``qty`` (0 removes it)."""
        book = self.books[symbol]
        side = book.bids if is_bid else book.asks
        if side.market.get(price, 0) == qty:
            return
        side.set_market(price, qty)
        book.touch(is_bid, price)
        if qty:
            self._cross_market(book, not is_bid, price, now_ms)

    def market_trade(
        self, symbol: str, price: int, qty: int, buyer_is_maker: bool, now_ms: int
    ) -> None:
        """A trade of the market: publish it and fill user orders it traded through."""
        book = self.books[symbol]
        book.last_price = price
        self.events.append(
            PublicTrade(symbol, self._trade_id(), price, qty, buyer_is_maker, now_ms)
        )
        side = book.bids if buyer_is_maker else book.asks
        if not side.queues:
            return
        left = qty
        for p in sorted(side.queues, reverse=buyer_is_maker):
            if left <= 0 or (p <= price if buyer_is_maker else p >= price):
                break
            q = side.queues.get(p)
            while q and left > 0:
                maker = q[0]
                n = min(left, maker.remaining)
                left -= n
                self._maker_fill_vs_market(book, side, maker, n, now_ms)
                q = side.queues.get(p)
        self._flush_balances(now_ms)

    # -- internals --------------------------------------------------------------------------
    def _cross_market(self, book: Book, user_is_bid: bool, price: int, now_ms: int) -> None:
        """Fill resting user orders that the market level just set at ``price`` crosses.

        Only market levels can sit across a user order (user orders would have
        matched each other), so the opposite side is consumed from its best price.
        """
        side = book.bids if user_is_bid else book.asks
        if not side.queues:
            return
        user_prices = sorted(side.queues, reverse=user_is_bid)
        if (user_prices[0] < price) if user_is_bid else (user_prices[0] > price):
            return
        opp = book.asks if user_is_bid else book.bids
        for p in user_prices:
            q = side.queues.get(p)
            while q:
                mp = opp.best()
                if not mp or ((mp > p) if user_is_bid else (mp < p)):
                    break
                mq = opp.market.get(mp, 0)
                if mq <= 0:
                    break  # a user level across a user order cannot happen; stop rather than loop
                maker = q[0]
                n = min(mq, maker.remaining)
                opp.set_market(mp, mq - n)
                book.touch(not user_is_bid, mp)
                self._maker_fill_vs_market(book, side, maker, n, now_ms)
                q = side.queues.get(p)
            if side.queues.get(p):
                break  # this level is no longer crossed; worse ones cannot be
        self._flush_balances(now_ms)

    def _maker_fill_vs_market(
        self, book: Book, side: _Side, maker: Order, n: int, now_ms: int
    ) -> None:
        price = maker.price
        tid = self._trade_id()
        self._settle(book.rules, maker, price, n, True, tid, now_ms)
        side._reduce_user(price, n)
        book.touch(side.is_bid, price)
        self.events.append(
            PublicTrade(
                book.symbol,
                tid,
                price,
                n,
                maker.is_buy,
                now_ms,
                maker.order_id if maker.is_buy else 0,
                0 if maker.is_buy else maker.order_id,
            )
        )
        book.last_price = price
        if maker.remaining == 0:
            q = side.queues[price]
            q.popleft()
            if not q:
                del side.queues[price]
                del side.user_qty[price]
                side._drop_if_empty(price)
            del book.open[maker.order_id]
            self._finish(maker, "FILLED", None, now_ms)

    def _take(self, book: Book, taker: Order, opp: _Side, now_ms: int) -> None:
        rules = book.rules
        is_buy = taker.is_buy
        limit = taker.price if taker.type != "MARKET" else (_BIG if is_buy else 0)
        quote_sized = taker.type == "MARKET" and taker.quote_order_qty > 0
        while taker.remaining > 0 and opp.prices:
            px = opp.best()
            if (px > limit) if is_buy else (px < limit):
                break
            if quote_sized:
                budget = taker.quote_order_qty - taker.cum_quote
                want = budget * SCALE // px
                want -= want % rules.step_size
                if want <= 0:
                    break
            else:
                want = taker.remaining
            mq = opp.market.get(px, 0)
            if mq > 0:
                n = min(want, mq)
                if not self._can_pay(taker, px, n):
                    self._finish(taker, "EXPIRED", "EXPIRED", now_ms)
                    return
                opp.set_market(px, mq - n)
                book.touch(not is_buy, px)
                tid = self._trade_id()
                self._settle(rules, taker, px, n, False, tid, now_ms)
                book.last_price = px
                self.events.append(
                    PublicTrade(
                        book.symbol,
                        tid,
                        px,
                        n,
                        not is_buy,
                        now_ms,
                        taker.order_id if is_buy else 0,
                        0 if is_buy else taker.order_id,
                    )
                )
                continue
            queue = opp.queues[px]
            maker = queue[0]
            if maker.account is taker.account and taker.stp_mode != "NONE":
                mode = taker.stp_mode
                if mode in ("EXPIRE_MAKER", "EXPIRE_BOTH"):
                    opp.remove_user(maker, maker.remaining)
                    del book.open[maker.order_id]
                    book.touch(maker.is_buy, px)
                    self._finish(maker, "EXPIRED_IN_MATCH", "TRADE_PREVENTION", now_ms)
                if mode in ("EXPIRE_TAKER", "EXPIRE_BOTH"):
                    self._finish(taker, "EXPIRED_IN_MATCH", "TRADE_PREVENTION", now_ms)
                    return
                continue
            n = min(want, maker.remaining)
            if not self._can_pay(taker, px, n):
                self._finish(taker, "EXPIRED", "EXPIRED", now_ms)
                return
            tid = self._trade_id()
            self._settle(rules, taker, px, n, False, tid, now_ms)
            self._settle(rules, maker, px, n, True, tid, now_ms)
            opp._reduce_user(px, n)
            book.touch(not is_buy, px)
            book.last_price = px
            buy, sell = (taker, maker) if is_buy else (maker, taker)
            self.events.append(
                PublicTrade(
                    book.symbol, tid, px, n, not is_buy, now_ms, buy.order_id, sell.order_id
                )
            )
            if maker.remaining == 0:
                queue.popleft()
                if not queue:
                    del opp.queues[px]
                    del opp.user_qty[px]
                    opp._drop_if_empty(px)
                del book.open[maker.order_id]
                self._finish(maker, "FILLED", None, now_ms)

    def _can_pay(self, taker: Order, px: int, n: int) -> bool:
        return (px * n // SCALE if taker.is_buy else n) <= taker.locked

    def _settle(
        self, rules: Instrument, o: Order, px: int, n: int, is_maker: bool, tid: int, now_ms: int
    ) -> None:
        """Move the balances of one side of a trade and record the fill."""
        acc = o.account
        notional = px * n // SCALE
        bps = acc.maker_bps if is_maker else acc.taker_bps
        if o.is_buy:
            pay_asset, get_asset, pay, get = rules.quote, rules.base, notional, n
        else:
            pay_asset, get_asset, pay, get = rules.base, rules.quote, n, notional
        fee = get * bps // 10_000
        pb = acc.balance(pay_asset)
        pb.locked -= pay
        o.locked -= pay
        acc.balance(get_asset).free += get - fee
        if fee:
            self.fees[get_asset] = self.fees.get(get_asset, 0) + fee
        self._touch_asset(acc, pay_asset)
        self._touch_asset(acc, get_asset)
        o.executed_qty += n
        o.cum_quote += notional
        o.update_ms = now_ms
        fill = Fill(px, n, fee, get_asset, tid, is_maker)
        o.fills.append(fill)
        self.trades.setdefault(acc.id, []).append((o, fill))
        if o.remaining > 0:
            o.status = "PARTIALLY_FILLED"
        elif o.status not in FINAL:
            o.status = "FILLED"
        self._exec(o, "TRADE", fill, now_ms)

    def _finish(self, o: Order, status: str, exec_type: str | None, now_ms: int) -> None:
        """Make ``o`` final, release what it still locks, report ``exec_type`` if any."""
        o.status = status
        o.update_ms = now_ms
        if o.locked:
            b = o.account.balance(o.lock_asset)
            b.locked -= o.locked
            b.free += o.locked
            o.locked = 0
            self._touch_asset(o.account, o.lock_asset)
        if exec_type is not None:
            self._exec(o, exec_type, None, now_ms)

    def _forget_old(self) -> None:
        """Drop the oldest finished orders and fills so a long-running venue stays bounded."""
        target = self.keep_orders * 3 // 4
        for oid in list(self.orders):
            if len(self.orders) <= target:
                break
            o = self.orders[oid]
            if o.status in FINAL:
                del self.orders[oid]
                if self.by_client.get((o.account.id, o.client_order_id)) is o:
                    del self.by_client[(o.account.id, o.client_order_id)]
        for acc_id, rows in self.trades.items():
            if len(rows) > target:
                self.trades[acc_id] = rows[-target:]

    def _after_take(self, book: Book, order: Order, opp: _Side, now_ms: int) -> None:
        """Rest, expire or complete a taker once it stopped matching."""
        quote_sized = order.orig_qty == _BIG
        if quote_sized:
            order.orig_qty = order.executed_qty
            if order.executed_qty and opp.prices:
                order.status = "FILLED"
                for ev in reversed(self.events):
                    if isinstance(ev, ExecEvent) and ev.order is order:
                        ev.status = "FILLED"
                        break
        if order.status in FINAL and order.status != "FILLED":
            return
        if order.remaining > 0 and order.type != "MARKET" and order.time_in_force == "GTC":
            (book.bids if order.is_buy else book.asks).add_user(order)
            book.open[order.order_id] = order
            book.touch(order.is_buy, order.price)
        elif order.remaining > 0 or (quote_sized and order.status != "FILLED"):
            self._finish(order, "EXPIRED", "EXPIRED", now_ms)
        else:
            self._finish(order, "FILLED", None, now_ms)

    def _exec(self, o: Order, exec_type: str, fill: Fill | None, now_ms: int) -> None:
        self.events.append(
            ExecEvent(o, exec_type, o.status, o.executed_qty, o.cum_quote, fill, now_ms)
        )

    def _touch_asset(self, acc: Account, asset: str) -> None:
        t = self._touched.get(acc.id)
        if t is None:
            self._touched[acc.id] = (acc, {asset})
        else:
            t[1].add(asset)

    def _flush_balances(self, now_ms: int) -> None:
        for acc, assets in self._touched.values():
            self.events.append(BalanceEvent(acc, tuple(sorted(assets)), now_ms))
        self._touched.clear()

    def _trade_id(self) -> int:
        t = self._next_trade_id
        self._next_trade_id += 1
        return t

    @staticmethod
    def _walk_cost(opp: _Side, qty: int) -> int:
        """Quote needed to buy ``qty`` from the book, -1 if the book is too thin."""
        cost: int = 0
        for p in opp.ordered():
            n = min(qty, opp.qty(p))
            cost += -(-p * n // SCALE)
            qty -= n
            if qty == 0:
                return cost
        return -1

    @staticmethod
    def _walk_sell_qty(opp: _Side, quote: int, step: int) -> int:
        """Base needed to receive ``quote`` by selling into the book (bounded by the book)."""
        qty = 0
        for p in opp.ordered():
            avail = opp.qty(p)
            need = -(-quote * SCALE // p)
            need += (-need) % step
            n = min(avail, need)
            qty += n
            quote -= p * n // SCALE
            if quote <= 0:
                break
        return qty

    @staticmethod
    def _fok_ok(o: Order, opp: _Side) -> bool:
        need = o.orig_qty
        for p in opp.ordered():
            if (p > o.price) if o.is_buy else (p < o.price):
                return False
            need -= opp.qty(p)
            if need <= 0:
                return True
        return False
