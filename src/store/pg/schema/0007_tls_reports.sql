-- SMTP TLS report counters (RFC 8460): outbound TLS sessions per recipient (policy)
-- domain, UTC day (days since 1970-01-01) and report row (policy and result as mailroom
-- serialises it). The same shape as dmarc_report_rows; the replica holding the
-- `tls-reports` lease sends the reports and subtracts what it sent.
CREATE TABLE tls_report_rows (
    domain text NOT NULL,
    day integer NOT NULL,
    row_key text NOT NULL,
    count bigint NOT NULL CHECK (count > 0),
    PRIMARY KEY (domain, day, row_key)
);
