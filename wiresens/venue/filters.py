"""Symbol rules of the venue and Binance's exchange filters, in fixed point.

The venue's symbols are :class:`wiresens.instruments.Instrument` values: a small
built-in table (BTCUSDT, ETHUSDT, BNBUSDT with Binance-like filters), or a
generic 8-decimal grid for other symbols. :func:`check_order` applies them in Binance's order
(PRICE_FILTER, LOT_SIZE or MARKET_LOT_SIZE, NOTIONAL) and returns the failing
filter's name, which the server turns into ``-1013 "Filter failure: NAME"``.
"""

from __future__ import annotations

from typing import Any

from wiresens.fixedpoint import SCALE, from_fixed, to_fixed
from wiresens.instruments import Instrument

__all__ = ["DEFAULT_SYMBOLS", "check_order", "exchange_info_symbol", "generic_instrument"]


def _inst(
    symbol: str, base: str, quote: str, tick: str, step: str, min_notional: str
) -> Instrument:
    return Instrument(
        symbol,
        base,
        quote,
        "TRADING",
        tick_size=to_fixed(tick),
        min_price=to_fixed(tick),
        max_price=to_fixed("1000000"),
        step_size=to_fixed(step),
        min_qty=to_fixed(step),
        max_qty=to_fixed("9000"),
        min_notional=to_fixed(min_notional),
        max_notional=to_fixed("9000000"),
        min_notional_market=True,
        avg_price_mins=5,
        order_types=("LIMIT", "LIMIT_MAKER", "MARKET"),
    )


DEFAULT_SYMBOLS: dict[str, Instrument] = {
    i.symbol: i
    for i in (
        _inst("BTCUSDT", "BTC", "USDT", "0.01", "0.00001", "5"),
        _inst("ETHUSDT", "ETH", "USDT", "0.01", "0.0001", "5"),
        _inst("BNBUSDT", "BNB", "USDT", "0.01", "0.001", "5"),
    )
}


def generic_instrument(symbol: str) -> Instrument:
    """Rules for a symbol the venue has no table for (e.g. from a replay): 8-decimal grid.

    The base asset is the symbol less a known quote suffix.
    """
    for quote in ("USDT", "USDC", "FDUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY"):
        if symbol.endswith(quote) and len(symbol) > len(quote):
            base = symbol[: -len(quote)]
            break
    else:
        base, quote = symbol[:-3], symbol[-3:]
    return _inst(symbol, base, quote, "0.00000001", "0.00000001", "0.0001")


def check_order(
    inst: Instrument,
    is_market: bool,
    price: int,
    quantity: int,
    quote_qty: int,
    reference_price: int,
) -> str | None:
    """Return the name of the first filter the order fails, or ``None``.

    ``price`` is 0 for MARKET orders; ``quantity`` is 0 for a MARKET order sized
    by ``quote_qty``. ``reference_price`` (the mid, standing in for Binance's
    average price) sizes the notional of MARKET orders; with no market at all the
    notional of a MARKET order is not checked.
    """
    if not is_market and not inst.price_ok(price):
        return "PRICE_FILTER"
    if quantity and not inst.qty_ok(quantity, is_market):
        return "MARKET_LOT_SIZE" if is_market else "LOT_SIZE"
    if is_market:
        if not reference_price:
            return None
        if quantity:
            ok = inst.notional_ok(reference_price, quantity, True)
        else:
            ok = inst.notional_ok(SCALE, quote_qty, True)
    else:
        ok = inst.notional_ok(price, quantity)
    return None if ok else "NOTIONAL"


def exchange_info_symbol(
    rules: Instrument, stp_modes: list[str], default_stp: str
) -> dict[str, Any]:
    """The symbol's entry of ``GET /api/v3/exchangeInfo``, shaped like Binance's."""
    f = from_fixed
    return {
        "symbol": rules.symbol,
        "status": "TRADING",
        "baseAsset": rules.base,
        "baseAssetPrecision": 8,
        "quoteAsset": rules.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": f(rules.min_price),
                "maxPrice": f(rules.max_price),
                "tickSize": f(rules.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": f(rules.min_qty),
                "maxQty": f(rules.max_qty),
                "stepSize": f(rules.step_size),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": f(rules.min_qty),
                "maxQty": f(rules.max_qty),
                "stepSize": f(rules.step_size),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": f(rules.min_notional),
                "applyMinToMarket": True,
                "maxNotional": f(rules.max_notional),
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": default_stp,
        "allowedSelfTradePreventionModes": stp_modes,
    }
