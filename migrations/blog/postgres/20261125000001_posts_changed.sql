-- blog-service instances keep posts and pages they have read in memory (see
-- blog-service/src/store/cached.rs). Every change to a post, whoever makes it, is
-- announced on channel blog_posts with the post's id, sent when the transaction commits;
-- a TRUNCATE is announced as '*'. An UPDATE that matches no row announces nothing.
CREATE FUNCTION blog_posts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('blog_posts', '*');
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('blog_posts', OLD.id::text);
    ELSE
        PERFORM pg_notify('blog_posts', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER posts_changed AFTER INSERT OR UPDATE OR DELETE ON posts
    FOR EACH ROW EXECUTE FUNCTION blog_posts_changed();
CREATE TRIGGER posts_truncated AFTER TRUNCATE ON posts
    FOR EACH STATEMENT EXECUTE FUNCTION blog_posts_changed();
