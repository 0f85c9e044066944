DROP INDEX "agents_status_updated_idx";--> statement-breakpoint
CREATE INDEX "agents_status_idx" ON "agents" USING btree ("status");