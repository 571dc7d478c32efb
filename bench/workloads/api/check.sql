-- Workloads 1, 2 and 6 through the API: look an operation up.
-- Ids :lo..:hi are stored (a hit) or not (a miss); -D lo=.. -D hi=..
\set id random(:lo, :hi)
SELECT * FROM @SCHEMA@.check_stripe_idempotency('charge', :id);
