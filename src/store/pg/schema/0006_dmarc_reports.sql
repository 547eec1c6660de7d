-- DMARC aggregate-report counters (RFC 7489 section 7.2): messages per reporting domain,
-- UTC day (days since 1970-01-01) and report row (the record as mailroom serialises it).
-- Every replica adds its counts here about once a minute; the one replica holding the
-- `dmarc-reports` lease sends the reports and subtracts what it sent.
CREATE TABLE dmarc_report_rows (
    domain text NOT NULL,
    day integer NOT NULL,
    row_key text NOT NULL,
    count bigint NOT NULL CHECK (count > 0),
    PRIMARY KEY (domain, day, row_key)
);
