-- Work that calls an upstream holds its operation id for a while before it has an answer, so
-- that a concurrent duplicate is told to retry rather than calling the upstream again; a
-- holder that died is taken over once its lease (microseconds since the Unix epoch) runs out.
ALTER TABLE operations ADD COLUMN lease_until_us BIGINT;
