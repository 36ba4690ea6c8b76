#!/usr/bin/env node
// A small authgate client in JavaScript, with fetch (Node 18 or later, or a browser in bearer
// mode — for cookie mode see docs/web-apps.md).
//
// It keeps the access and refresh tokens of one session, refreshes once when the gateway says
// `token_expired`, steps up with the password when a route says `fresh_token_required`, and
// branches on the stable `error` codes of the gateway's JSON errors (never on messages).
//
// Run against `authgate demo` (or any gateway with its /api token route and /admin fresh route):
//
//   node examples/client.mjs                          # http://127.0.0.1:8080, user alice
//   node examples/client.mjs https://gw.example.com bob
//
// The password comes from $AUTHGATE_PASSWORD, else the demo's.

import { pathToFileURL } from "node:url";

/** An error answer of the gateway: `status`, the machine `code` and the human message. */
export class AuthgateError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

/** One user's session with an authgate gateway. */
export class Client {
  constructor(base) {
    this.base = base.replace(/\/+$/, "");
    this.access = null;
    this.refreshToken = null;
  }

  /** Creates the account; an existing one is fine (409 username_taken). */
  async register(username, password) {
    try {
      return await this.#call("POST", "/auth/register", { json: { username, password } });
    } catch (e) {
      if (e.code !== "username_taken") throw e;
      return null;
    }
  }

  async login(username, password) {
    const answer = await this.#call("POST", "/auth/login", { json: { username, password } });
    this.access = answer.access_token;
    this.refreshToken = answer.refresh_token;
    return answer;
  }

  /** A new access token (not fresh); keeps the rotated refresh token. */
  async refresh() {
    const answer = await this.#call("POST", "/auth/refresh", { token: this.refreshToken });
    this.access = answer.access_token;
    this.refreshToken = answer.refresh_token ?? this.refreshToken;
    return answer;
  }

  /** A fresh access token in the same session, for routes that ask for one. */
  async stepUp(password) {
    const answer = await this.#call("POST", "/auth/fresh", { token: this.access, json: { password } });
    this.access = answer.access_token;
    return answer;
  }

  me() {
    return this.request("GET", "/auth/me");
  }

  logout() {
    return this.#call("POST", "/auth/logout", { token: this.access });
  }

  /**
   * Calls `path` with the access token; refreshes once on `token_expired`, and steps up once on
   * `fresh_token_required` when `password` is given.
   */
  async request(method, path, { password, json } = {}) {
    try {
      return await this.#call(method, path, { token: this.access, json });
    } catch (e) {
      if (e.code === "token_expired" && this.refreshToken) {
        await this.refresh();
      } else if (e.code === "fresh_token_required" && password !== undefined) {
        await this.stepUp(password);
      } else {
        throw e;
      }
    }
    return this.#call(method, path, { token: this.access, json });
  }

  async #call(method, path, { token, json } = {}) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    }
    const r = await fetch(this.base + path, { method, headers, body });
    const isJson = (r.headers.get("content-type") ?? "").startsWith("application/json");
    const answer = isJson ? await r.json() : await r.text();
    if (r.status >= 400) {
      if (isJson && answer.error) throw new AuthgateError(r.status, answer.error, answer.message);
      throw new AuthgateError(r.status, "upstream", String(answer).slice(0, 200));
    }
    return answer;
  }
}

async function main() {
  const base = process.argv[2] ?? process.env.AUTHGATE_URL ?? "http://127.0.0.1:8080";
  const user = process.argv[3] ?? "alice";
  const password = process.env.AUTHGATE_PASSWORD ?? "correct horse battery";

  const c = new Client(base);
  await c.register(user, password);
  await c.login(user, password);
  console.log("me:", (await c.me()).username);
  const echoed = await c.request("GET", "/api/orders");
  // The demo's echo upstream lists headers as [name, value] pairs; others may send an object.
  const echoedHeaders = echoed?.headers ?? [];
  const pairs = Array.isArray(echoedHeaders) ? echoedHeaders : Object.entries(echoedHeaders);
  const identity = Object.fromEntries(pairs.map(([k, v]) => [String(k).toLowerCase(), v]));
  console.log("upstream saw user:", identity["x-auth-username"]);
  await c.refresh();
  // The refreshed token is not fresh: /admin asks for a step-up, which request() does.
  const settings = await c.request("GET", "/admin/settings", { password });
  console.log("fresh route reached:", settings.path ?? settings);
  await c.logout();
  try {
    await c.me();
  } catch (e) {
    console.log("after logout:", e.code);
    if (e.code !== "token_revoked") throw e;
    return;
  }
  throw new Error("the session was still alive after logout");
}

// Run only as a script, so the classes can be imported elsewhere.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => {
    console.error(e.message);
    process.exit(1);
  });
}
