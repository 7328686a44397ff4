-- Org tokens can be revoked (`vapi-ingest tokens revoke`, DELETE /api/tokens/{id}):
-- a revoked token is refused on its next request, and its row stays as a record
-- of who held it and when it stopped.
ALTER TABLE api_tokens ADD COLUMN revoked_at timestamptz;
