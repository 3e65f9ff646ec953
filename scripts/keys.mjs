#!/usr/bin/env node
// Manages API keys through a running worker's admin API.
//
//   npm run keys -- create <name> [--per-minute N] [--per-day N] [--models a/b,c/d]
//   npm run keys -- list
//   npm run keys -- revoke <id>
//
// --url (default http://127.0.0.1:8787, the local `npm start`) names the
// worker; the AUTH_TOKEN environment variable is the operator's token
// (default "local-dev-token", what `npm start` uses locally).
const USAGE = `usage: npm run keys -- <create NAME [--per-minute N] [--per-day N] [--models a/b,c/d] | list | revoke ID> [--url URL]`;

function parse(argv) {
  const options = { url: "http://127.0.0.1:8787" };
  const positional = [];
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const m = arg.match(/^--([a-z-]+)(?:=(.*))?$/);
    if (!m) {
      positional.push(arg);
      continue;
    }
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new Error(`--${m[1]} needs a value`);
    options[m[1]] = value;
  }
  return { options, positional };
}

function whole(value, name) {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new Error(`${name} must be a whole number`);
  return n;
}

async function call(options, method, path, body) {
  const token = process.env.AUTH_TOKEN || "local-dev-token";
  const res = await fetch(new URL(path, options.url), {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    value = text;
  }
  if (!res.ok) {
    const why = typeof value === "object" ? [value.error, value.details].filter(Boolean).join(": ") : text;
    throw new Error(`${method} ${path}: HTTP ${res.status} ${why}`);
  }
  return value;
}

export async function main(argv) {
  const { options, positional } = parse(argv);
  const [command, arg] = positional;
  switch (command) {
    case "create": {
      if (!arg) throw new Error("create needs a name");
      const body = { name: arg };
      const perMinute = whole(options["per-minute"], "--per-minute");
      const perDay = whole(options["per-day"], "--per-day");
      if (perMinute !== undefined) body.per_minute = perMinute;
      if (perDay !== undefined) body.per_day = perDay;
      if (options.models) body.models = options.models.split(",").map((m) => m.trim()).filter(Boolean);
      const created = await call(options, "POST", "/admin/keys", body);
      console.log(JSON.stringify(created, null, 2));
      console.error("The key is shown only this once: keep it now.");
      return created;
    }
    case "list": {
      const { keys } = await call(options, "GET", "/admin/keys");
      console.log(JSON.stringify(keys, null, 2));
      return keys;
    }
    case "revoke": {
      if (!arg) throw new Error("revoke needs a key id");
      const revoked = await call(options, "DELETE", `/admin/keys/${encodeURIComponent(arg)}`);
      console.log(JSON.stringify(revoked, null, 2));
      return revoked;
    }
    default:
      throw new Error(USAGE);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).catch((error) => {
    console.error(error.message);
    process.exit(1);
  });
}
