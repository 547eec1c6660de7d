-- mailroom schema 3: the outbound queue shared by every replica.
-- Version 3, not 2: version 2 is reserved for the blob-locations migration of another
-- change, so the two can land in either order without renumbering.
-- Applied once, in one transaction, by the migrator (src/store/pg/migrate.rs).

CREATE TABLE queue_items (
    id text PRIMARY KEY,                      -- QueueId: 24 lowercase hex digits
    -- The envelope as JSON (src/queue/envelope.rs). `hold` and `next_attempt` below are
    -- authoritative over its "state" and "next_attempt" fields.
    envelope jsonb NOT NULL,
    -- The message bytes, stored once in the blob tables; refcount counts this row.
    body_hash bytea NOT NULL REFERENCES blobs,
    size bigint NOT NULL,
    next_attempt timestamptz NOT NULL,
    hold bool NOT NULL DEFAULT false,
    -- The replica trying this item, until when, and a counter bumped by every claim: a
    -- write-back names the token it claimed with, so a replica whose lease expired (and
    -- was taken over) changes nothing.
    lease_owner text,
    lease_until timestamptz,
    lease_token bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- What the schedulers scan: items not on hold, by due time.
CREATE INDEX queue_items_due ON queue_items (next_attempt) WHERE NOT hold;
-- Deleting a blob checks that no queue item still names it.
CREATE INDEX queue_items_by_body ON queue_items (body_hash);
