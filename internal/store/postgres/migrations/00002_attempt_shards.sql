-- attempt_shards parks attempt counts that could not go into attempt_count
-- at once. A transaction that appended attempts tries to lock the
-- attempt_count row without waiting (FOR UPDATE SKIP LOCKED). When it gets
-- the row, it folds every parked count it can lock into it, adds its own,
-- trims the oldest attempts beyond the bound and commits. When another
-- transaction holds the row, it adds its count to its connection's own
-- shard row instead and commits without waiting. So appenders on several
-- writers and instances never queue behind one row, and attempt_count plus
-- the parked counts is always the number of attempts.

-- +goose Up
CREATE TABLE attempt_shards (
    shard TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    n     BIGINT NOT NULL
);

-- +goose Down
DROP TABLE attempt_shards;
