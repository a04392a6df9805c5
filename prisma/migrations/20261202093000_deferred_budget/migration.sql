-- What the request's key monthly budget pool took for a deferred settlement (the pool's key, its capacity and the
-- amount, µ$): when the charge is known the pool gets back what the charge did not use (gateway/src/api/deferred.ts).
ALTER TABLE "deferred_settlements" ADD COLUMN "budget_taken" JSONB;
