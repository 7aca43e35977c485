-- Posts of blog-service (SQLite), in its own database. Authors are auth-service users,
-- which live in another database: author_id has no foreign key, and author_username is a
-- copy that blog-service refreshes whenever Introspect reports a new name for the author.
-- Times are RFC 3339 text in UTC, which sorts as the times do.
CREATE TABLE posts (
    id              BLOB PRIMARY KEY NOT NULL,
    author_id       BLOB NOT NULL,
    author_username TEXT NOT NULL,
    title           TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    content         TEXT NOT NULL CHECK (length(content) BETWEEN 1 AND 50000),
    create_time     TEXT NOT NULL,
    update_time     TEXT NOT NULL
);

-- Keyset pagination, newest first: one index for all posts, one for each author's posts
-- (it also serves the rename of an author's posts).
CREATE INDEX posts_newest_first_idx ON posts (create_time DESC, id DESC);
CREATE INDEX posts_author_newest_first_idx ON posts (author_id, create_time DESC, id DESC);
