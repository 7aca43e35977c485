// The original homework flow through clients generated from proto/ by protoc-gen-es
// (npx buf generate proto --template proto/buf.gen.yaml), on @connectrpc/connect-node.
// It runs twice: over gRPC (HTTP/2) and over gRPC-Web (HTTP/1.1), against a running pair
// at AUTH_ADDR and BLOG_ADDR (default 127.0.0.1:50051 / :50052). TRANSPORTS=grpc or
// TRANSPORTS=grpc-web runs one of them only.
//
//   node --test tests/clients/node/

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, describe, test } from "node:test";

import { BinaryReader } from "@bufbuild/protobuf/wire";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  Http2SessionManager,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";

import { AuthService, IntrospectionService } from "./gen/auth/v1/auth_pb.js";
import { BlogService } from "./gen/blog/v1/blog_pb.js";

const TIMEOUT_MS = 10_000;
const PASSWORD = "correct horse battery staple";

function baseUrl(variable, fallback) {
  const value = process.env[variable] || fallback;
  return /^https?:\/\//.test(value) ? value.replace(/\/+$/, "") : `http://${value}`;
}
const AUTH_URL = baseUrl("AUTH_ADDR", "127.0.0.1:50051");
const BLOG_URL = baseUrl("BLOG_ADDR", "127.0.0.1:50052");

// Each transport kind makes a transport for a base URL; HTTP/2 sessions are closed after
// the tests so that the process exits.
const sessions = [];
after(() => sessions.forEach((session) => session.abort()));
const TRANSPORTS = {
  grpc: (url) => {
    const sessionManager = new Http2SessionManager(url);
    sessions.push(sessionManager);
    return createGrpcTransport({ baseUrl: url, sessionManager, defaultTimeoutMs: TIMEOUT_MS });
  },
  "grpc-web": (url) =>
    createGrpcWebTransport({ baseUrl: url, httpVersion: "1.1", defaultTimeoutMs: TIMEOUT_MS }),
};
const selected = (process.env.TRANSPORTS || "grpc,grpc-web").split(",").map((s) => s.trim());
for (const name of selected) {
  assert.ok(TRANSPORTS[name], `unknown transport ${name} in TRANSPORTS`);
}

const uniqueUsername = (prefix) => `${prefix}-${randomBytes(6).toString("hex")}`;
const bearer = (token) => ({ headers: { authorization: `Bearer ${token}` } });
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

async function expectCode(code, promise) {
  try {
    await promise;
  } catch (error) {
    const connectError = ConnectError.from(error);
    assert.equal(
      Code[connectError.code],
      Code[code],
      `expected ${Code[code]}, got ${Code[connectError.code]}: ${connectError.rawMessage}`,
    );
    return connectError;
  }
  assert.fail(`expected ${Code[code]}, but the call succeeded`);
}

function assertRecent(timestamp) {
  assert.ok(timestamp, "timestamp is not set");
  const skew = Math.abs(Date.now() - timestampDate(timestamp).getTime());
  assert.ok(skew < 60_000, `timestamp ${timestampDate(timestamp).toISOString()} is not recent`);
}

function assertTokenPair(tokens) {
  assert.equal(tokens.tokenType, "Bearer");
  assert.ok(tokens.accessToken && tokens.refreshToken);
  assert.notEqual(tokens.accessToken, tokens.refreshToken);
  const access = timestampDate(tokens.accessExpireTime).getTime();
  const refresh = timestampDate(tokens.refreshExpireTime).getTime();
  assert.ok(Date.now() < access && access < refresh, "expiry times out of order");
}

// The field names of the google.rpc.BadRequest detail of an error, decoded by hand
// (BadRequest { repeated FieldViolation field_violations = 1; }
//  FieldViolation { string field = 1; string description = 2; }).
function badRequestFields(error) {
  const fields = [];
  for (const detail of error.details) {
    if (detail.desc !== undefined || detail.type !== "google.rpc.BadRequest") continue;
    const reader = new BinaryReader(detail.value);
    while (reader.pos < reader.len) {
      const [number, wireType] = reader.tag();
      if (number !== 1) {
        reader.skip(wireType);
        continue;
      }
      const violation = new BinaryReader(reader.bytes());
      let field = "";
      let description = "";
      while (violation.pos < violation.len) {
        const [n, w] = violation.tag();
        if (n === 1) field = violation.string();
        else if (n === 2) description = violation.string();
        else violation.skip(w);
      }
      assert.ok(description, `violation of ${field} has no description`);
      fields.push(field);
    }
  }
  return fields.sort();
}

for (const name of selected) {
  describe(`over ${name}`, () => {
    const authTransport = TRANSPORTS[name](AUTH_URL);
    const blogTransport = TRANSPORTS[name](BLOG_URL);
    const auth = createClient(AuthService, authTransport);
    const introspection = createClient(IntrospectionService, authTransport);
    const blog = createClient(BlogService, blogTransport);

    test("the homework flow", async () => {
      // 1. Anyone may list posts.
      const listed = await blog.listPosts({ pageSize: 5 });
      assert.ok(listed.posts.length <= 5);

      // 2. Register.
      const username = uniqueUsername("js");
      const email = `${username}@example.com`;
      const { user } = await auth.register({ username, email, password: PASSWORD });
      assert.match(user.id, UUID_V7);
      assert.equal(user.username, username);
      assert.equal(user.email, email);
      assertRecent(user.createTime);
      assertRecent(user.updateTime);
      assert.equal(Object.hasOwn(user, "password"), false);

      // 3. Login; a garbage authorization header is ignored.
      const loggedIn = await auth.login(
        { username, password: PASSWORD },
        { headers: { authorization: "Bearer garbage.garbage.garbage" } },
      );
      assertTokenPair(loggedIn.tokens);
      assert.equal(loggedIn.user.id, user.id);
      const first = loggedIn.tokens;

      // 4. Refresh: a new pair for the same session; the old access token dies at once.
      const { tokens: refreshed } = await auth.refresh({ refreshToken: first.refreshToken });
      assertTokenPair(refreshed);
      assert.notEqual(refreshed.accessToken, first.accessToken);
      assert.notEqual(refreshed.refreshToken, first.refreshToken);
      await expectCode(Code.Unauthenticated, auth.getProfile({}, bearer(first.accessToken)));
      let access = refreshed.accessToken;

      // 5. GetProfile.
      const profile = await auth.getProfile({}, bearer(access));
      assert.deepEqual(
        [profile.user.id, profile.user.username, profile.user.email],
        [user.id, username, email],
      );
      const { sessions: live } = await auth.listSessions({}, bearer(access));
      assert.equal(live.length, 1);
      assert.equal(live[0].current, true);
      const checked = await introspection.introspect({ token: access });
      assert.equal(checked.active, true);
      assert.equal(checked.userId, user.id);
      assert.equal(checked.username, username);
      assert.equal(checked.sessionId, live[0].id);

      // 6. CreatePost, then read it back with no token.
      const { post } = await blog.createPost(
        { title: `Hello over ${name}`, content: "First post" },
        bearer(access),
      );
      assert.match(post.id, UUID_V7);
      assert.equal(post.authorId, user.id);
      assert.equal(post.authorUsername, username);
      assert.equal(post.title, `Hello over ${name}`);
      assert.equal(post.content, "First post");
      assertRecent(post.createTime);
      const fetched = await blog.getPost({ id: post.id });
      assert.equal(fetched.post.title, post.title);
      assert.equal(fetched.post.authorUsername, username);
      const mine = await blog.listPosts({ authorId: user.id });
      assert.deepEqual(
        mine.posts.map((p) => p.id),
        [post.id],
      );

      // 7. UpdateProfile: new username and email, a new pair; the old access token is dead.
      const newUsername = uniqueUsername("js-renamed");
      const newEmail = `${newUsername}@example.org`;
      const updated = await auth.updateProfile(
        { username: newUsername, email: newEmail },
        bearer(access),
      );
      assert.equal(updated.user.id, user.id);
      assert.equal(updated.user.username, newUsername);
      assert.equal(updated.user.email, newEmail);
      assertTokenPair(updated.tokens);
      await expectCode(
        Code.Unauthenticated,
        blog.createPost({ title: "stale", content: "old token" }, bearer(access)),
      );
      access = updated.tokens.accessToken;
      const second = await blog.createPost(
        { title: "Renamed", content: "Second post" },
        bearer(access),
      );
      assert.equal(second.post.authorUsername, newUsername);
      const renamed = await blog.getPost({ id: post.id });
      assert.equal(renamed.post.authorUsername, newUsername, "posts follow the rename");

      // 8. Logout: the token can no longer write.
      await auth.logout({}, bearer(access));
      await expectCode(
        Code.Unauthenticated,
        blog.createPost({ title: "after logout", content: "nope" }, bearer(access)),
      );
      assert.equal((await introspection.introspect({ token: access })).active, false);

      // 9. Login with the new username; the old one is gone.
      await expectCode(Code.Unauthenticated, auth.login({ username, password: PASSWORD }));
      const one = await auth.login({ username: newUsername, password: PASSWORD });
      assertTokenPair(one.tokens);
      assert.equal(one.user.username, newUsername);

      // 10. LogoutAll from one of two sessions: every session's token stops writing.
      const two = await auth.login({ username: newUsername, password: PASSWORD });
      const revoked = await auth.logoutAll({}, bearer(one.tokens.accessToken));
      assert.equal(revoked.revokedSessions, 2);
      for (const { tokens } of [one, two]) {
        await expectCode(
          Code.Unauthenticated,
          blog.createPost({ title: "after logout all", content: "nope" }, bearer(tokens.accessToken)),
        );
        await expectCode(
          Code.Unauthenticated,
          auth.refresh({ refreshToken: tokens.refreshToken }),
        );
      }

      const still = await blog.listPosts({ authorId: user.id });
      assert.deepEqual(
        still.posts.map((p) => p.id),
        [second.post.id, post.id],
      );
    });

    test("a validation error names every bad field in google.rpc.BadRequest", async () => {
      const error = await expectCode(
        Code.InvalidArgument,
        auth.register({ username: "x", email: "not an email", password: "short" }),
      );
      assert.deepEqual(badRequestFields(error), ["email", "password", "username"]);
    });

    test("a missing or malformed token is UNAUTHENTICATED", async () => {
      await expectCode(Code.Unauthenticated, auth.getProfile({}));
      await expectCode(
        Code.Unauthenticated,
        blog.createPost({ title: "t", content: "c" }, bearer("not-a-jwt")),
      );
    });
  });
}
