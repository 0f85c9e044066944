DROP INDEX "jobs_lease_idx";--> statement-breakpoint
DROP INDEX "jobs_events_gc_idx";