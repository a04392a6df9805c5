-- CreateIndex
CREATE INDEX "reservations_user_id_settled_at_idx" ON "reservations"("user_id", "settled_at");
