-- The posts list's order of titles (posts/sorting.py): natural ("#4" before "#24") and
-- case-insensitive on any PostgreSQL, ICU or not, with no index on the host's posts. Each run
-- of digits becomes its length (three digits) then its digits without leading zeros, so that
-- runs compare as numbers; the rest is the lowered title. A set-returning SQL function, called
-- in FROM, is inlined into the query: called as a scalar it cost ~8 µs a post more.
CREATE FUNCTION natural_title_key(title text) RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(string_agg(
        CASE WHEN part.n % 2 = 0
            THEN lpad(length(ltrim(part.s, '0'))::text, 3, '0') || ltrim(part.s, '0')
            ELSE part.s END, ''), '')
    FROM unnest(string_to_array(
        regexp_replace(lower(title), '[0-9]+', E'\x01\\&\x01', 'g'), E'\x01'))
        WITH ORDINALITY AS part (s, n)
$$;
