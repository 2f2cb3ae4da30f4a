-- A cleanup policy's remembered posts (0027) lose their foreign key to the policy: its check ran
-- once for every post a run remembered, while the run already holds its policy's row locked,
-- so the policy cannot be gone. What the key's cascade did on a policy's deletion, this
-- statement-level trigger does, for any deleter.
-- Not a contract step: the previous release neither reads nor writes these tables.
ALTER TABLE cleanup_policy_posts DROP CONSTRAINT cleanup_policy_posts_policy_id_fkey;

CREATE FUNCTION cleanup_policy_posts_forget() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM cleanup_policy_posts t USING gone g WHERE t.policy_id = g.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER cleanup_policy_posts_forget AFTER DELETE ON cleanup_policies
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION cleanup_policy_posts_forget();
