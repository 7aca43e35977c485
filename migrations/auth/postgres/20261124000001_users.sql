-- Users of auth-service. Usernames and emails are unique case-insensitively: the
-- unique indexes decide, so two concurrent registrations of one name cannot both win.
CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    username      text        NOT NULL,
    email         text        NOT NULL,
    password_hash text        NOT NULL,
    create_time   timestamptz NOT NULL,
    update_time   timestamptz NOT NULL
);

CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
