-- Ingest's retention job (docs/operations/retention.md): the state of agents silent past their
-- days, chunks no version names, old state transfers.
INSERT INTO scheduled_jobs (name) VALUES ('ingest.retention') ON CONFLICT DO NOTHING;
