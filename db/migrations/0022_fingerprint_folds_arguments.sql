-- One cause, one group. PostgreSQL names a missing function with the argument types it was asked
-- with, which depend on how the statement was planned: a fresh statement says f(unknown, unknown),
-- a re-planned cached one f(uuid, text). One broken function made two groups (510 + 90), and
-- replaying one of them fixed part of the incident. An argument list after a name (a function's, a
-- type's such as varchar(<n>)) is now folded to (<args>); same other rules as 0018, and the
-- fingerprint and group of rows that already have an error are recomputed so that they join.
CREATE OR REPLACE FUNCTION error_fingerprint(p_error text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT left(
        regexp_replace(
            regexp_replace(
                regexp_replace(
                    regexp_replace(
                        p_error,
                        '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}', '<id>', 'g'),
                    '''[^'']*''|"[^"]*"', '<value>', 'g'),
                '[0-9]+(\.[0-9]+)?', '<n>', 'g'),
            '([[:alnum:]_>])\([^()]*\)', '\1(<args>)', 'g'),
        300)
$$;

UPDATE webhook_delivery_log
   SET error_fingerprint = error_fingerprint(error_message),
       error_group = md5(error_fingerprint(error_message))
 WHERE error_message IS NOT NULL
   AND error_fingerprint IS DISTINCT FROM error_fingerprint(error_message);
