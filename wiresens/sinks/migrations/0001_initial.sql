-- Wiresens sink schema, version 1: one table per record family, fixed-point BIGINT
-- prices and quantities (value * 1e8, as in the records), int64 ns timestamps, and the
-- event-log position of each row as its key, so a replayed batch inserts nothing twice.
-- {schema} is replaced by the quoted schema name when the migration runs.

CREATE TABLE {schema}.sink_offsets (
    node text NOT NULL,
    sink text NOT NULL,
    log_segment integer NOT NULL,
    log_position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node, sink)
);

CREATE TABLE {schema}.orders (
    node text NOT NULL,
    log_segment integer NOT NULL,
    log_position bigint NOT NULL,
    idx integer NOT NULL,
    kind smallint NOT NULL,
    version smallint NOT NULL,
    flags integer NOT NULL,
    symbol bigint NOT NULL,
    ts_exch bigint NOT NULL,
    ts_recv bigint NOT NULL,
    ts_pub bigint NOT NULL,
    cl_ord_id bigint NOT NULL,
    orig_cl_ord_id bigint NOT NULL,
    exch_order_id bigint NOT NULL,
    price bigint NOT NULL,
    qty bigint NOT NULL,
    stop_price bigint NOT NULL,
    quote_qty bigint NOT NULL,
    policy integer NOT NULL,
    account integer NOT NULL,
    side smallint NOT NULL,
    order_type smallint NOT NULL,
    tif smallint NOT NULL,
    stp smallint NOT NULL,
    PRIMARY KEY (node, log_segment, log_position, idx)
);

CREATE TABLE {schema}.executions (
    node text NOT NULL,
    log_segment integer NOT NULL,
    log_position bigint NOT NULL,
    idx integer NOT NULL,
    kind smallint NOT NULL,
    version smallint NOT NULL,
    flags integer NOT NULL,
    symbol bigint NOT NULL,
    ts_exch bigint NOT NULL,
    ts_recv bigint NOT NULL,
    ts_pub bigint NOT NULL,
    cl_ord_id bigint NOT NULL,
    orig_cl_ord_id bigint NOT NULL,
    exch_order_id bigint NOT NULL,
    trade_id bigint NOT NULL,
    price bigint NOT NULL,
    qty bigint NOT NULL,
    last_px bigint NOT NULL,
    last_qty bigint NOT NULL,
    cum_qty bigint NOT NULL,
    cum_quote bigint NOT NULL,
    commission bigint NOT NULL,
    policy smallint NOT NULL,
    account smallint NOT NULL,
    side smallint NOT NULL,
    status smallint NOT NULL,
    exec_type smallint NOT NULL,
    reason smallint NOT NULL,
    error_code smallint NOT NULL,
    PRIMARY KEY (node, log_segment, log_position, idx)
);

CREATE TABLE {schema}.positions (
    node text NOT NULL,
    log_segment integer NOT NULL,
    log_position bigint NOT NULL,
    idx integer NOT NULL,
    kind smallint NOT NULL,
    version smallint NOT NULL,
    flags integer NOT NULL,
    symbol bigint NOT NULL,
    ts_exch bigint NOT NULL,
    ts_recv bigint NOT NULL,
    ts_pub bigint NOT NULL,
    policy integer NOT NULL,
    account integer NOT NULL,
    qty bigint NOT NULL,
    avg_px bigint NOT NULL,
    realized_pnl bigint NOT NULL,
    PRIMARY KEY (node, log_segment, log_position, idx)
);

CREATE TABLE {schema}.account_updates (
    node text NOT NULL,
    log_segment integer NOT NULL,
    log_position bigint NOT NULL,
    idx integer NOT NULL,
    kind smallint NOT NULL,
    version smallint NOT NULL,
    flags integer NOT NULL,
    symbol bigint NOT NULL,
    ts_exch bigint NOT NULL,
    ts_recv bigint NOT NULL,
    ts_pub bigint NOT NULL,
    asset bigint NOT NULL,
    account integer NOT NULL,
    free bigint NOT NULL,
    locked bigint NOT NULL,
    PRIMARY KEY (node, log_segment, log_position, idx)
);

CREATE TABLE {schema}.top_of_book (
    node text NOT NULL,
    log_segment integer NOT NULL,
    log_position bigint NOT NULL,
    idx integer NOT NULL,
    kind smallint NOT NULL,
    version smallint NOT NULL,
    flags integer NOT NULL,
    symbol bigint NOT NULL,
    ts_exch bigint NOT NULL,
    ts_recv bigint NOT NULL,
    ts_pub bigint NOT NULL,
    bid_px bigint NOT NULL,
    bid_qty bigint NOT NULL,
    ask_px bigint NOT NULL,
    ask_qty bigint NOT NULL,
    PRIMARY KEY (node, log_segment, log_position, idx)
);

CREATE TABLE {schema}.trades (
    node text NOT NULL,
    log_segment integer NOT NULL,
    log_position bigint NOT NULL,
    idx integer NOT NULL,
    kind smallint NOT NULL,
    version smallint NOT NULL,
    flags integer NOT NULL,
    symbol bigint NOT NULL,
    ts_exch bigint NOT NULL,
    ts_recv bigint NOT NULL,
    ts_pub bigint NOT NULL,
    trade_id bigint NOT NULL,
    price bigint NOT NULL,
    qty bigint NOT NULL,
    PRIMARY KEY (node, log_segment, log_position, idx)
);
