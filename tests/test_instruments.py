"""Instruments from real exchangeInfo bodies (old spot, USD-M) and the documented new schema."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wiresens.errors import ConfigError
from wiresens.fixedpoint import to_fixed
from wiresens.instruments import NO_LIMIT, NO_SYMBOL, Instrument, InstrumentTable

DATA = Path(os.environ.get("WIRESENS_DATA", Path(__file__).parents[2] / "shared" / "data"))
CRYPTOFEED = DATA / "binance" / "cryptofeed"


def _exchange_info(name: str) -> bytes:
    path = CRYPTOFEED / name
    if not path.exists():
        pytest.skip(f"{path} absent: set WIRESENS_DATA to the recorded Binance data")
    line = path.read_bytes().split(b"\n", 1)[0]
    return line.split(b": ", 1)[1]  # "<url> -> <time>: <body>"


def test_spot_exchange_info_2021_old_schema() -> None:
    table = InstrumentTable.from_exchange_info(_exchange_info("BINANCE.0"))
    assert len(table) == 1695
    assert collections.Counter(i.status for i in table) == {"TRADING": 1262, "BREAK": 433}
    btc = table["BTCUSDT"]
    assert (btc.base, btc.quote, btc.trading) == ("BTC", "USDT", True)
    assert btc.tick_size == to_fixed("0.01") and btc.min_price == to_fixed("0.01")
    assert btc.max_price == to_fixed("1000000")
    assert (btc.step_size, btc.min_qty, btc.max_qty) == (
        to_fixed("0.00001"),
        to_fixed("0.00001"),
        to_fixed("9000"),
    )
    # old MIN_NOTIONAL: minNotional 10, applyToMarket true; no max
    assert (btc.min_notional, btc.min_notional_market, btc.max_notional) == (
        to_fixed("10"),
        True,
        NO_LIMIT,
    )
    assert (btc.multiplier_up, btc.multiplier_down, btc.avg_price_mins) == (
        to_fixed("5"),
        to_fixed("0.2"),
        5,
    )
    assert (btc.max_num_orders, btc.max_num_algo_orders) == (200, 5)
    # MARKET_LOT_SIZE stepSize "0": falls back to LOT_SIZE's step when checking
    assert btc.market_step_size == 0
    assert btc.qty_ok(to_fixed("0.00123"), market=True)
    assert all(i.tick_size > 0 and i.step_size > 0 and i.min_notional > 0 for i in table)


def test_indices_are_dense_one_based_and_round_trip() -> None:
    table = InstrumentTable.from_exchange_info(_exchange_info("BINANCE.0"))
    names = table.symbols()
    assert [table.index(s) for s in names] == list(range(1, len(names) + 1))
    assert all(table[table.index(s)].symbol == s for s in names)
    assert table.index("NOPE") == NO_SYMBOL
    with pytest.raises(KeyError, match="NOPE"):
        table["NOPE"]
    with pytest.raises(KeyError):
        table[NO_SYMBOL]
    assert table.asset(table.asset_index("BTC")) == "BTC"


def test_pinned_symbol_list_rebuilds_same_indices() -> None:
    body = _exchange_info("BINANCE.0")
    chosen = ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"]
    table = InstrumentTable.from_exchange_info(body, symbols=chosen)
    assert table.symbols() == chosen and table.index("LRCBTC") == 3
    again = InstrumentTable.from_exchange_info(body, symbols=table.symbols())
    assert [again.index(s) for s in chosen] == [1, 2, 3, 4]
    with pytest.raises(ConfigError, match="BTCUSDX"):
        InstrumentTable.from_exchange_info(body, symbols=["BTCUSDX"])


def test_usdm_exchange_info() -> None:
    table = InstrumentTable.from_exchange_info(_exchange_info("BINANCE_FUTURES.0"))
    assert len(table) == 122
    assert collections.Counter(i.status for i in table) == {"TRADING": 121, "PENDING_TRADING": 1}
    btc = table["BTCUSDT"]
    assert btc.contract_type == "PERPETUAL"
    assert btc.min_notional == to_fixed("5")  # USD-M MIN_NOTIONAL spells it "notional"
    assert btc.min_price == to_fixed("556.72") and btc.tick_size == to_fixed("0.01")
    assert (btc.max_num_orders, btc.max_num_algo_orders) == (200, 10)  # "limit" there


# The current schema, filter bodies as given in filters.md.
NEW_SCHEMA = {
    "timezone": "UTC",
    "serverTime": 1700000000000,
    "rateLimits": [],
    "exchangeFilters": [{"filterType": "EXCHANGE_MAX_NUM_ORDERS", "maxNumOrders": 1000}],
    "symbols": [
        {
            "symbol": "ETHBTC",
            "status": "TRADING",
            "baseAsset": "ETH",
            "quoteAsset": "BTC",
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0.00000100",
                    "maxPrice": "100000.00000000",
                    "tickSize": "0.00000100",
                },
                {
                    "filterType": "PERCENT_PRICE_BY_SIDE",
                    "bidMultiplierUp": "1.2",
                    "bidMultiplierDown": "0.2",
                    "askMultiplierUp": "5",
                    "askMultiplierDown": "0.8",
                    "avgPriceMins": 1,
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": "10.00000000",
                    "applyMinToMarket": False,
                    "maxNotional": "10000.00000000",
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
                {
                    "filterType": "TRAILING_DELTA",
                    "minTrailingAboveDelta": 10,
                    "maxTrailingAboveDelta": 2000,
                    "minTrailingBelowDelta": 10,
                    "maxTrailingBelowDelta": 2000,
                },
                {"filterType": "MAX_NUM_ICEBERG_ORDERS", "maxNumIcebergOrders": 5},
                {"filterType": "SOME_FUTURE_FILTER", "whatever": [1, 2]},
            ],
            "permissionSets": [["SPOT", "MARGIN"]],
        }
    ],
}


def test_new_schema_notional_and_unknown_filters() -> None:
    table = InstrumentTable.from_exchange_info(msgspec.json.encode(NEW_SCHEMA))
    eth = table["ETHBTC"]
    assert (eth.min_notional, eth.max_notional) == (to_fixed("10"), to_fixed("10000"))
    assert (eth.min_notional_market, eth.max_notional_market) == (False, False)
    assert eth.bid_multiplier_up == to_fixed("1.2") and eth.ask_multiplier_down == to_fixed("0.8")
    px = to_fixed("0.05")
    assert eth.notional_ok(px, to_fixed("200"))  # 10 BTC
    assert not eth.notional_ok(px, to_fixed("199"))
    assert not eth.notional_ok(px, to_fixed("200001"))
    assert eth.notional_ok(px, to_fixed("199"), market=True)  # applyMinToMarket false


def test_bad_bodies_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="JSON"):
        InstrumentTable.from_exchange_info(b"{nope")
    with pytest.raises(ConfigError, match="shape"):
        InstrumentTable.from_exchange_info(b'{"serverTime": 1, "symbols": [{"symbol": 3}]}')
    bad = msgspec.json.decode(msgspec.json.encode(NEW_SCHEMA))
    bad["symbols"][0]["filters"][0]["tickSize"] = "0.000000001"
    with pytest.raises(ConfigError, match=r"ETHBTC.*PRICE_FILTER"):
        InstrumentTable.from_exchange_info(msgspec.json.encode(bad))
    table = InstrumentTable([Instrument("A", "X", "Y", "TRADING")])
    with pytest.raises(ConfigError, match="already"):
        table.add(Instrument("A", "X", "Y", "TRADING"))


INST = Instrument(
    "BTCUSDT",
    "BTC",
    "USDT",
    "TRADING",
    tick_size=to_fixed("0.01"),
    min_price=to_fixed("0.01"),
    max_price=to_fixed("1000000"),
    step_size=to_fixed("0.00001"),
    min_qty=to_fixed("0.00001"),
    max_qty=to_fixed("9000"),
)


@given(st.integers(1, 100_000_000), st.integers(1, 99))
def test_price_grid(ticks: int, off: int) -> None:
    on_grid = INST.min_price + (ticks - 1) * INST.tick_size
    assert INST.price_ok(on_grid) == (on_grid <= INST.max_price)
    assert not INST.price_ok(on_grid + off * INST.tick_size // 100)


@given(st.integers(1, 900_000_000), st.integers(1, 999))
def test_qty_steps(steps: int, off: int) -> None:
    qty = INST.min_qty + (steps - 1) * INST.step_size
    assert INST.qty_ok(qty)
    assert not INST.qty_ok(qty + off * INST.step_size // 1000)
    assert not INST.qty_ok(0) and not INST.qty_ok(INST.max_qty + INST.step_size)


def test_maximum_beyond_int64_is_open() -> None:
    body = msgspec.json.decode(msgspec.json.encode(NEW_SCHEMA))
    body["symbols"][0]["filters"].append(
        {
            "filterType": "LOT_SIZE",
            "minQty": "1",
            "maxQty": "900000000000.00000000",
            "stepSize": "1",
        }
    )
    eth = InstrumentTable.from_exchange_info(msgspec.json.encode(body))["ETHBTC"]
    assert eth.max_qty == NO_LIMIT and eth.min_qty == to_fixed("1")
