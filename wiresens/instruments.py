"""Instruments: a symbol's trading rules in fixed point, and the symbol <-> index table.

Records carry a ``symbol`` index (u4), not a name. :class:`InstrumentTable` assigns
the indices: 1, 2, ... in the order instruments are given (index 0 is reserved
for "no symbol", so a zeroed record never names a real instrument). Build the
table once per session from exchangeInfo, and store the symbol list beside an
event log (:meth:`InstrumentTable.symbols`) so a replay rebuilds the same
indices even if Binance reorders exchangeInfo.

:class:`Instrument` holds the filters of one symbol as int64 fixed point
(``wiresens.fixedpoint``, 8 decimals). It reads both exchangeInfo schemas: the
old spot ``MIN_NOTIONAL`` (``minNotional``, ``applyToMarket``), the current
``NOTIONAL`` (min and max, each with its apply-to-market flag) and USD-M's
``MIN_NOTIONAL`` (``notional``). A filter absent from exchangeInfo leaves its
bound open: minimum and step 0, maximum ``NO_LIMIT``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import msgspec

from wiresens.binance.wire import DECODERS, ExchangeFilter, ExchangeInfo, SymbolInfo
from wiresens.errors import ConfigError, FixedPointError
from wiresens.fixedpoint import SCALE, to_fixed

__all__ = ["NO_LIMIT", "NO_SYMBOL", "Instrument", "InstrumentTable", "instrument_from_symbol"]

NO_LIMIT = (1 << 63) - 1
"""An open upper bound (int64 max)."""
NO_SYMBOL = 0
"""The index no instrument has (a zeroed record's ``symbol``)."""


class Instrument(msgspec.Struct, frozen=True):
    """One symbol's identity and trading rules; prices, quantities, notionals in fixed point."""

    symbol: str
    base: str
    quote: str
    status: str
    tick_size: int = 0
    min_price: int = 0
    max_price: int = NO_LIMIT
    step_size: int = 0
    min_qty: int = 0
    max_qty: int = NO_LIMIT
    market_step_size: int = 0
    market_min_qty: int = 0
    market_max_qty: int = NO_LIMIT
    min_notional: int = 0
    max_notional: int = NO_LIMIT
    min_notional_market: bool = False
    max_notional_market: bool = False
    multiplier_up: int = 0
    multiplier_down: int = 0
    bid_multiplier_up: int = 0
    bid_multiplier_down: int = 0
    ask_multiplier_up: int = 0
    ask_multiplier_down: int = 0
    avg_price_mins: int = 0
    max_num_orders: int = 0
    max_num_algo_orders: int = 0
    order_types: tuple[str, ...] = ()
    contract_type: str = ""
    """USD-M contract (``PERPETUAL``, ``CURRENT_QUARTER``...); empty for spot."""

    @property
    def trading(self) -> bool:
        """True when the symbol accepts orders now (status ``TRADING``)."""
        return self.status == "TRADING"

    def price_ok(self, price: int) -> bool:
        """PRICE_FILTER: within [min, max] and on the tick grid (a 0 bound is not enforced)."""
        if price <= 0:
            return False
        if self.min_price and price < self.min_price:
            return False
        if self.max_price and price > self.max_price:
            return False
        return not self.tick_size or (price - self.min_price) % self.tick_size == 0

    def qty_ok(self, qty: int, market: bool = False) -> bool:
        """LOT_SIZE (or MARKET_LOT_SIZE for market orders): range and step."""
        lo, hi, step = self.min_qty, self.max_qty, self.step_size
        if market:
            lo = self.market_min_qty or lo
            hi = min(hi, self.market_max_qty) if self.market_max_qty else hi
            step = self.market_step_size or step
        if qty <= 0 or qty < lo or qty > hi:
            return False
        return not step or (qty - lo) % step == 0

    def notional_ok(self, price: int, qty: int, market: bool = False) -> bool:
        """MIN_NOTIONAL / NOTIONAL: ``price * qty`` within bounds (exact integer arithmetic)."""
        notional = price * qty  # scale SCALE**2; Python ints do not overflow
        if (not market or self.min_notional_market) and notional < self.min_notional * SCALE:
            return False
        return not (
            (not market or self.max_notional_market)
            and self.max_notional != NO_LIMIT
            and notional > self.max_notional * SCALE
        )


def _fx(text: str | None, default: int) -> int:
    """Fixed point of a filter bound; a maximum beyond int64 means no limit."""
    if text is None:
        return default
    try:
        return to_fixed(text)
    except FixedPointError:
        whole = text.strip().partition(".")[0]
        if whole.isdigit() and int(whole) > NO_LIMIT // SCALE:
            return NO_LIMIT  # e.g. maxQty "900000000000.00000000": beyond int64, i.e. open
        raise


def _max(text: str | None) -> int:
    # Binance writes "0" for some maxima it does not enforce (MARKET_LOT_SIZE on
    # old spot symbols); treat that as open too.
    v = _fx(text, NO_LIMIT)
    return v or NO_LIMIT


def instrument_from_symbol(info: SymbolInfo) -> Instrument:
    """Build an :class:`Instrument` from one exchangeInfo ``symbols`` entry.

    Raises
    ------
    ConfigError
        A filter value is not a decimal Wiresens can represent (named in the message).
    """
    kw: dict[str, object] = {}
    f: ExchangeFilter
    try:
        for f in info.filters:
            t = f.filterType
            if t == "PRICE_FILTER":
                kw.update(
                    tick_size=_fx(f.tickSize, 0),
                    min_price=_fx(f.minPrice, 0),
                    max_price=_max(f.maxPrice),
                )
            elif t == "LOT_SIZE":
                kw.update(
                    step_size=_fx(f.stepSize, 0), min_qty=_fx(f.minQty, 0), max_qty=_max(f.maxQty)
                )
            elif t == "MARKET_LOT_SIZE":
                kw.update(
                    market_step_size=_fx(f.stepSize, 0),
                    market_min_qty=_fx(f.minQty, 0),
                    market_max_qty=_max(f.maxQty),
                )
            elif t == "MIN_NOTIONAL":
                # spot before 2023: minNotional + applyToMarket; USD-M: notional
                kw.update(
                    min_notional=_fx(f.minNotional or f.notional, 0),
                    min_notional_market=bool(f.applyToMarket if f.minNotional else True),
                    avg_price_mins=f.avgPriceMins or kw.get("avg_price_mins", 0),
                )
            elif t == "NOTIONAL":
                kw.update(
                    min_notional=_fx(f.minNotional, 0),
                    max_notional=_max(f.maxNotional),
                    min_notional_market=bool(f.applyMinToMarket),
                    max_notional_market=bool(f.applyMaxToMarket),
                    avg_price_mins=f.avgPriceMins or kw.get("avg_price_mins", 0),
                )
            elif t == "PERCENT_PRICE":
                kw.update(
                    multiplier_up=_fx(f.multiplierUp, 0),
                    multiplier_down=_fx(f.multiplierDown, 0),
                    avg_price_mins=f.avgPriceMins or 0,
                )
            elif t == "PERCENT_PRICE_BY_SIDE":
                kw.update(
                    bid_multiplier_up=_fx(f.bidMultiplierUp, 0),
                    bid_multiplier_down=_fx(f.bidMultiplierDown, 0),
                    ask_multiplier_up=_fx(f.askMultiplierUp, 0),
                    ask_multiplier_down=_fx(f.askMultiplierDown, 0),
                    avg_price_mins=f.avgPriceMins or 0,
                )
            elif t == "MAX_NUM_ORDERS":
                kw["max_num_orders"] = f.maxNumOrders or f.limit or 0
            elif t == "MAX_NUM_ALGO_ORDERS":
                kw["max_num_algo_orders"] = f.maxNumAlgoOrders or f.limit or 0
    except FixedPointError as exc:
        raise ConfigError(
            f"exchangeInfo symbol {info.symbol!r}, filter {f.filterType}: {exc}"
        ) from exc
    return Instrument(
        symbol=info.symbol,
        base=info.baseAsset,
        quote=info.quoteAsset,
        status=info.status,
        order_types=info.orderTypes,
        contract_type=info.contractType,
        **kw,  # type: ignore[arg-type]
    )


class InstrumentTable:
    """Instruments by name and by record index (1-based; 0 is :data:`NO_SYMBOL`).

    Assets (``ACCOUNT_UPDATE.asset``) get their own 1-based indices, in order of
    first appearance as base or quote, plus any added by :meth:`asset_index`.
    """

    __slots__ = ("_assets", "_by_index", "_by_symbol", "_index_of_asset")

    def __init__(self, instruments: Iterable[Instrument] = ()) -> None:
        self._by_index: list[Instrument | None] = [None]
        self._by_symbol: dict[str, int] = {}
        self._assets: list[str] = [""]
        self._index_of_asset: dict[str, int] = {}
        for inst in instruments:
            self.add(inst)

    @classmethod
    def from_exchange_info(
        cls, body: bytes | str | ExchangeInfo, symbols: Sequence[str] | None = None
    ) -> InstrumentTable:
        """Parse an exchangeInfo body (spot or USD-M).

        ``symbols`` keeps only those, in that order (pass the list stored with an
        event log to rebuild its indices); a name missing from exchangeInfo raises
        :class:`ConfigError`.
        """
        info = body if isinstance(body, ExchangeInfo) else _decode_info(body)
        by_name = {s.symbol: s for s in info.symbols}
        if symbols is None:
            return cls(instrument_from_symbol(s) for s in info.symbols)
        missing = [s for s in symbols if s not in by_name]
        if missing:
            raise ConfigError(
                f"symbols {missing[:5]} are not in exchangeInfo ({len(by_name)} symbols); "
                "check the spelling (Binance names are upper case, e.g. 'BTCUSDT')"
            )
        return cls(instrument_from_symbol(by_name[s]) for s in symbols)

    def add(self, inst: Instrument) -> int:
        """Append an instrument and return its index (refuses duplicates)."""
        if inst.symbol in self._by_symbol:
            raise ConfigError(f"symbol {inst.symbol!r} is already in the instrument table")
        idx = len(self._by_index)
        self._by_index.append(inst)
        self._by_symbol[inst.symbol] = idx
        self.asset_index(inst.base)
        self.asset_index(inst.quote)
        return idx

    def index(self, symbol: str) -> int:
        """The record index of ``symbol``; :data:`NO_SYMBOL` (0) when unknown (no exception:
        the decoder calls this per message)."""
        return self._by_symbol.get(symbol, NO_SYMBOL)

    def __getitem__(self, key: int | str) -> Instrument:
        """The instrument at an index or with a name; KeyError names what was missing."""
        idx = self._by_symbol.get(key, NO_SYMBOL) if isinstance(key, str) else key
        inst = self._by_index[idx] if 0 < idx < len(self._by_index) else None
        if inst is None:
            raise KeyError(f"no instrument {key!r} in this table ({len(self)} instruments)")
        return inst

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._by_symbol

    def __len__(self) -> int:
        return len(self._by_index) - 1

    def __iter__(self) -> Iterator[Instrument]:
        return (i for i in self._by_index[1:] if i is not None)

    def symbols(self) -> list[str]:
        """Names in index order (index = position + 1): store this to pin the indices."""
        return list(self._by_symbol)

    def asset_index(self, asset: str) -> int:
        """The index of an asset name, adding it when new (assets appear in balances
        that no listed symbol trades)."""
        idx = self._index_of_asset.get(asset)
        if idx is None:
            idx = len(self._assets)
            self._assets.append(asset)
            self._index_of_asset[asset] = idx
        return idx

    def asset(self, index: int) -> str:
        """The asset name of an index ("" for 0)."""
        return self._assets[index]


def _decode_info(body: bytes | str) -> ExchangeInfo:
    try:
        info: ExchangeInfo = DECODERS[ExchangeInfo].decode(body)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"exchangeInfo body does not have the documented shape: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"exchangeInfo body is not valid JSON: {exc}") from exc
    return info
