-- What each periodic-fetch source (`MAILROOM_FETCH`) has fetched, shared by every
-- replica so that a source is fetched once whichever replica runs it (under the lease
-- `fetch <source>`). `source` is a digest of "local <- URL".
-- One row per source: the IMAP folder's UIDVALIDITY and the highest UID delivered, and
-- the message in flight with the local UIDNEXT before its delivery.
CREATE TABLE fetch_sources (
    source text PRIMARY KEY,
    uid_validity bigint,
    last_uid bigint NOT NULL DEFAULT 0,
    pending_id text,
    pending_uid_next bigint,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- POP3: one row per UIDL delivered and still on the server.
CREATE TABLE fetch_seen (
    source text NOT NULL REFERENCES fetch_sources (source) ON DELETE CASCADE,
    remote_id text NOT NULL,
    PRIMARY KEY (source, remote_id)
);
