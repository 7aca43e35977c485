-- Posts of blog-service, in its own database. Authors are auth-service users, which live
-- in another database: author_id has no foreign key, and author_username is a copy that
-- blog-service refreshes whenever Introspect reports a new name for the author.
CREATE TABLE posts (
    id              uuid        PRIMARY KEY,
    author_id       uuid        NOT NULL,
    author_username text        NOT NULL,
    title           text        NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    content         text        NOT NULL CHECK (char_length(content) BETWEEN 1 AND 50000),
    create_time     timestamptz NOT NULL,
    update_time     timestamptz NOT NULL
);

-- Keyset pagination, newest first: one index for all posts, one for each author's posts
-- (it also serves the rename of an author's posts).
CREATE INDEX posts_newest_first_idx ON posts (create_time DESC, id DESC);
CREATE INDEX posts_author_newest_first_idx ON posts (author_id, create_time DESC, id DESC);
