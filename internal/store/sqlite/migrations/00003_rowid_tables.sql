-- Rebuild docs and attempts as rowid tables (they were WITHOUT ROWID).
--
-- A WITHOUT ROWID table is an index b-tree keyed by its primary key, and
-- an index b-tree keeps whole rows in its interior pages too. SQLite's
-- guidance is to use one only for rows under about a twentieth of a page
-- (200 bytes at 4 KiB); device identities, twins and registration records
-- are 200–800 bytes and more, and attempts about 280. With four or five
-- rows per page, interior pages included, every insert dirtied several
-- interior pages and split large cells: a batch of 30 registrations wrote
-- 70–90 WAL frames. As rowid tables, new rows append to the table b-tree
-- (interior pages hold only integers), and the (kind, id) and (id) keys
-- live in small-celled indexes. Rows up to about 4 KiB also stay on their
-- page instead of spilling to overflow pages past 1 KiB.
--
-- The primary keys keep their meaning (ON CONFLICT (kind, id) and
-- ON CONFLICT (id) use the automatic unique indexes); the implicit rowid
-- is never read. Rows are copied in key order, so existing data keeps its
-- locality.

-- +goose Up
CREATE TABLE docs_rowid (
    kind    TEXT NOT NULL,
    id      TEXT NOT NULL,
    grp     TEXT NOT NULL DEFAULT '',
    etag    TEXT NOT NULL,
    doc     TEXT NOT NULL CHECK (json_valid(doc)),
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (kind, id)
) STRICT;
INSERT INTO docs_rowid (kind, id, grp, etag, doc, created, updated)
    SELECT kind, id, grp, etag, doc, created, updated FROM docs ORDER BY kind, id;
DROP TABLE docs;
ALTER TABLE docs_rowid RENAME TO docs;
CREATE INDEX docs_kind_grp_id ON docs (kind, grp, id);

CREATE TABLE attempts_rowid (
    id              TEXT NOT NULL PRIMARY KEY,
    ts              TEXT NOT NULL,
    registration_id TEXT NOT NULL,
    doc             TEXT NOT NULL CHECK (json_valid(doc))
) STRICT;
INSERT INTO attempts_rowid (id, ts, registration_id, doc)
    SELECT id, ts, registration_id, doc FROM attempts ORDER BY id;
DROP TABLE attempts;
ALTER TABLE attempts_rowid RENAME TO attempts;
CREATE INDEX attempts_registration_ts ON attempts (registration_id, ts, id);
CREATE INDEX attempts_ts ON attempts (ts, id);

-- +goose Down
CREATE TABLE docs_wr (
    kind    TEXT NOT NULL,
    id      TEXT NOT NULL,
    grp     TEXT NOT NULL DEFAULT '',
    etag    TEXT NOT NULL,
    doc     TEXT NOT NULL CHECK (json_valid(doc)),
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID, STRICT;
INSERT INTO docs_wr (kind, id, grp, etag, doc, created, updated)
    SELECT kind, id, grp, etag, doc, created, updated FROM docs;
DROP TABLE docs;
ALTER TABLE docs_wr RENAME TO docs;
CREATE INDEX docs_kind_grp_id ON docs (kind, grp, id);

CREATE TABLE attempts_wr (
    id              TEXT NOT NULL PRIMARY KEY,
    ts              TEXT NOT NULL,
    registration_id TEXT NOT NULL,
    doc             TEXT NOT NULL CHECK (json_valid(doc))
) WITHOUT ROWID, STRICT;
INSERT INTO attempts_wr (id, ts, registration_id, doc)
    SELECT id, ts, registration_id, doc FROM attempts;
DROP TABLE attempts;
ALTER TABLE attempts_wr RENAME TO attempts;
CREATE INDEX attempts_registration_ts ON attempts (registration_id, ts, id);
CREATE INDEX attempts_ts ON attempts (ts, id);
