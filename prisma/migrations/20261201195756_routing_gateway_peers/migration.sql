-- CreateTable
CREATE TABLE "gateway_peers" (
    "gateway_id" TEXT NOT NULL,
    "url" TEXT NOT NULL,
    "pin" TEXT NOT NULL,
    "secret" TEXT NOT NULL,
    "expires_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "gateway_peers_pkey" PRIMARY KEY ("gateway_id")
);
