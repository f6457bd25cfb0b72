-- Schema of the embedded store: versioned JSON documents and the bounded
-- registration attempt log. Timestamps are fixed-width RFC 3339 UTC text
-- (nanoseconds), so text order is time order.

-- +goose Up
CREATE TABLE docs (
    kind    TEXT NOT NULL,
    id      TEXT NOT NULL,
    grp     TEXT NOT NULL DEFAULT '',
    etag    TEXT NOT NULL,
    doc     TEXT NOT NULL CHECK (json_valid(doc)),
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID, STRICT;

CREATE INDEX docs_kind_grp_id ON docs (kind, grp, id);

CREATE TABLE attempts (
    id              TEXT NOT NULL PRIMARY KEY,
    ts              TEXT NOT NULL,
    registration_id TEXT NOT NULL,
    doc             TEXT NOT NULL CHECK (json_valid(doc))
) WITHOUT ROWID, STRICT;

CREATE INDEX attempts_registration_ts ON attempts (registration_id, ts, id);
CREATE INDEX attempts_ts ON attempts (ts, id);

-- +goose Down
DROP TABLE attempts;
DROP TABLE docs;
