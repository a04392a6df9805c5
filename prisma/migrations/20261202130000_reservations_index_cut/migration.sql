-- Every settled request writes a reservation row; each of its indexes is written with it (docs/performance.md,
-- "Issue 17 — PostgreSQL per request"). (user_id, status) served no query the (user_id, settled_at) index does not:
-- the audit's held and overdraft sums and the account's usage read a user's rows by user_id first, which the
-- (user_id, settled_at) index answers as well.
DROP INDEX IF EXISTS "reservations_user_id_status_idx";
