-- The claim walks the outbox terminal by terminal, taking each one's first live row (its head)
-- in one index descent (a loose index scan), instead of testing every due row for an earlier
-- live one: during an outage the queue grows by every receipt signed, its heads do not.
CREATE INDEX outbox_live_by_terminal ON outbox (merchant_tin, branch_no, pos_no, number) WHERE NOT dead;
