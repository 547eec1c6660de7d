-- Small named values every replica must agree on: the data-dir files that are mirrored
-- into the database (DKIM keys, certificates and the ACME account, the SRS secret, the
-- generated postmaster), keyed by their path relative to the data dir. `version` grows
-- by one on every change, so a replica can tell a newer value from the one it has and
-- a concurrent writer loses instead of overwriting.
CREATE TABLE kv (
    name text PRIMARY KEY,
    value bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    version bigint NOT NULL DEFAULT 1
);
