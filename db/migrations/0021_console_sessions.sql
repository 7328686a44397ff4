-- Console sessions and the sign-in limiter, kept by the server so that every web process agrees.
--
-- A session's cookie holds a random id; the server holds only its SHA-256 here, with who signed in
-- (the SHA-256 of their token, never the token). Signing out deletes the row, so a copied cookie is
-- worthless from that moment (issue 18: it kept full rights for 12 hours). Expired rows are deleted by
-- the daily retention job.
CREATE TABLE console_sessions (
    id_sha256    text PRIMARY KEY,
    token_sha256 text NOT NULL,
    admin        boolean NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX idx_console_sessions_expires ON console_sessions (expires_at);

-- Sign-in attempts per client address in a fixed window: counted in the same statement that decides
-- (no check-then-count race), shared by every web process, and never forgotten while its window runs
-- (the per-process table was cleared by a spray of 10,001 addresses).
CREATE TABLE console_signin_attempts (
    client       text PRIMARY KEY,
    window_start timestamptz NOT NULL,
    attempts     integer NOT NULL
);
CREATE INDEX idx_console_signin_attempts_window ON console_signin_attempts (window_start);
