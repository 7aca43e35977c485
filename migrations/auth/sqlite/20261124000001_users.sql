-- Users of auth-service (SQLite). Usernames and emails are unique case-insensitively:
-- the unique indexes decide, so two concurrent registrations of one name cannot both win.
CREATE TABLE users (
    id            BLOB PRIMARY KEY NOT NULL,
    username      TEXT NOT NULL,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    create_time   TEXT NOT NULL,
    update_time   TEXT NOT NULL
);

CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
