// Checks answers against openapi.json: the status is documented for the
// operation, required headers are there and match their schemas, the
// Content-Type is one the answer declares, and a JSON body validates (ajv,
// JSON Schema 2020-12, as OpenAPI 3.1 uses).
//
//   import { checkAgainstSpec, checkResponse } from "./openapi-check.mjs";
//   checkAgainstSpec("GET", "/health", 200, res.headers, await res.json()); // throws on a mismatch
//   const body = await checkResponse("POST", "/generate", res);             // reads res, checks, returns the body
import { AssertionError } from "node:assert";
import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const SPEC_URL = new URL("../public/openapi.json", import.meta.url);
const SPEC_KEY = "openapi.json";

/** The parsed OpenAPI document. */
export const spec = JSON.parse(readFileSync(SPEC_URL, "utf8"));

const ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false });
addFormats(ajv);
ajv.addFormat("binary", true);
ajv.addSchema(spec, SPEC_KEY);
const validators = new Map();

function escapePointer(segment) {
  return String(segment).replace(/~/g, "~0").replace(/\//g, "~1");
}

function pointerGet(pointer) {
  const parts = pointer.replace(/^#\/?/, "").split("/").filter((p) => p !== "");
  let node = spec;
  for (const raw of parts) {
    const part = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    node = node?.[part];
  }
  return node;
}

/** Follows OpenAPI-level `$ref`s (responses, headers, parameters); returns `[object, pointer]`. */
function resolve(node, pointer) {
  let seen = 0;
  while (node && typeof node.$ref === "string") {
    if (!node.$ref.startsWith("#/") || ++seen > 10) throw new Error(`unsupported $ref ${node.$ref}`);
    pointer = node.$ref;
    node = pointerGet(pointer);
  }
  return [node, pointer];
}

function validatorAt(pointer) {
  if (!validators.has(pointer)) validators.set(pointer, ajv.compile({ $ref: `${SPEC_KEY}${pointer}` }));
  return validators.get(pointer);
}

/** Errors of `value` against the schema at `pointer` (a JSON pointer into openapi.json). */
export function schemaProblems(pointer, value) {
  const validate = validatorAt(pointer);
  if (validate(value)) return [];
  return validate.errors.map((e) => `${e.instancePath || "(root)"} ${e.message}${e.params && Object.keys(e.params).length ? ` ${JSON.stringify(e.params)}` : ""}`);
}

/** The path template of openapi.json that `path` (a template or a concrete path) names. */
export function matchPath(path) {
  const bare = path.split("?")[0];
  if (spec.paths[bare]) return bare;
  for (const template of Object.keys(spec.paths)) {
    const names = [];
    const source = template.split(/(\{[^}]+\})/).map((part) => {
      if (/^\{[^}]+\}$/.test(part)) {
        names.push(part);
        // `/replicate/v1/{path}` takes the rest of the path, slashes included.
        return part === "{path}" ? "(.+)" : "([^/]+)";
      }
      return part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    });
    if (new RegExp(`^${source.join("")}$`).test(bare)) return template;
  }
  return null;
}

function headerGetter(headers) {
  if (!headers) return () => null;
  if (typeof headers.get === "function") return (name) => headers.get(name);
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), Array.isArray(v) ? v.join(", ") : v]));
  return (name) => lower[name.toLowerCase()] ?? null;
}

function mediaTypeMatches(declared, actual) {
  if (declared === actual) return true;
  const [type, sub] = declared.split("/");
  const [atype, asub] = actual.split("/");
  return (type === "*" || type === atype) && (sub === "*" || sub === asub);
}

function isJsonType(mime) {
  return mime === "application/json" || mime.endsWith("+json");
}

function isEmptyBody(body) {
  if (body === undefined || body === null || body === "") return true;
  if (body instanceof ArrayBuffer) return body.byteLength === 0;
  if (ArrayBuffer.isView(body)) return body.byteLength === 0;
  return false;
}

/**
 * Everything about an answer that disagrees with openapi.json, as a list of
 * sentences (empty when it matches). `headers`: a Headers object or a plain
 * object; `body`: the parsed JSON, a string, bytes, or undefined (not read:
 * only status and headers are checked).
 */
export function specProblems(method, pathTemplate, status, headers, body) {
  const problems = [];
  const template = matchPath(pathTemplate);
  if (!template) return [`no path of openapi.json matches ${pathTemplate}`];
  const where = `${method.toUpperCase()} ${template} ${status}`;
  const [pathItem, pathPointer] = resolve(spec.paths[template], `#/paths/${escapePointer(template)}`);
  let verb = method.toLowerCase();
  if (verb === "head" && !pathItem.head) verb = "get";
  const operation = pathItem[verb];
  if (!operation) return [`${method.toUpperCase()} ${template} is not in openapi.json`];
  const responses = operation.responses ?? {};
  const key = [String(status), `${String(status)[0]}XX`, "default"].find((k) => responses[k]);
  if (!key) return [`${where}: status ${status} is not documented (documented: ${Object.keys(responses).join(", ")})`];
  const [response, responsePointer] = resolve(responses[key], `${pathPointer}/${verb}/responses/${key}`);
  const get = headerGetter(headers);

  for (const [name, declared] of Object.entries(response.headers ?? {})) {
    if (name.toLowerCase() === "content-type") continue;
    const [header, headerPointer] = resolve(declared, `${responsePointer}/headers/${escapePointer(name)}`);
    const value = get(name);
    if (value === null || value === undefined) {
      if (header.required) problems.push(`${where}: header ${name} is required but missing`);
      continue;
    }
    if (header.schema) {
      for (const p of schemaProblems(`${headerPointer}/schema`, value)) problems.push(`${where}: header ${name}=${JSON.stringify(value)}: ${p}`);
    }
  }

  const content = response.content;
  if (!content) {
    if (method.toUpperCase() !== "HEAD" && !isEmptyBody(body)) problems.push(`${where}: the answer has a body, but none is documented`);
    return problems;
  }
  const contentType = get("content-type");
  if (!contentType) {
    problems.push(`${where}: no Content-Type (documented: ${Object.keys(content).join(", ")})`);
    return problems;
  }
  const mime = contentType.split(";")[0].trim().toLowerCase();
  const mediaKey = Object.keys(content).find((k) => mediaTypeMatches(k.toLowerCase(), mime));
  if (!mediaKey) {
    problems.push(`${where}: Content-Type ${mime} is not documented (documented: ${Object.keys(content).join(", ")})`);
    return problems;
  }
  const media = content[mediaKey];
  if (body === undefined || method.toUpperCase() === "HEAD" || !media.schema || !isJsonType(mime)) return problems;
  let value = body;
  if (typeof value === "string" || value instanceof Uint8Array || value instanceof ArrayBuffer) {
    const text = typeof value === "string" ? value : new TextDecoder().decode(value);
    try {
      value = JSON.parse(text);
    } catch {
      problems.push(`${where}: the body is not JSON: ${text.slice(0, 120)}`);
      return problems;
    }
  }
  const schemaPointer = `${responsePointer}/content/${escapePointer(mediaKey)}/schema`;
  for (const p of schemaProblems(schemaPointer, value)) problems.push(`${where}: body ${p}`);
  return problems;
}

/** Throws an AssertionError listing every disagreement of the answer with openapi.json. */
export function checkAgainstSpec(method, pathTemplate, status, headers, body) {
  const problems = specProblems(method, pathTemplate, status, headers, body);
  if (problems.length) {
    throw new AssertionError({
      message: `the answer does not match openapi.json:\n  ${problems.join("\n  ")}\nbody: ${preview(body)}`,
      actual: body,
      operator: "checkAgainstSpec",
    });
  }
}

/**
 * Reads a fetch Response (JSON bodies parsed), checks it with
 * checkAgainstSpec and returns the body.
 */
export async function checkResponse(method, path, res) {
  const type = (res.headers.get("content-type") || "").split(";")[0].trim().toLowerCase();
  let body;
  if (method.toUpperCase() === "HEAD" || res.status === 204 || res.status === 304) {
    body = await res.arrayBuffer();
  } else if (isJsonType(type)) {
    const text = await res.text();
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  } else {
    body = new Uint8Array(await res.arrayBuffer());
  }
  checkAgainstSpec(method, path, res.status, res.headers, body);
  return body;
}

/** Errors of a request body against the operation's documented request schema (JSON only). */
export function requestProblems(method, pathTemplate, body, contentType = "application/json") {
  const template = matchPath(pathTemplate);
  if (!template) return [`no path of openapi.json matches ${pathTemplate}`];
  const pathPointer = `#/paths/${escapePointer(template)}`;
  const operation = spec.paths[template][method.toLowerCase()];
  const content = operation?.requestBody?.content?.[contentType];
  if (!content?.schema) return [`${method} ${template} documents no ${contentType} body`];
  return schemaProblems(`${pathPointer}/${method.toLowerCase()}/requestBody/content/${escapePointer(contentType)}/schema`, body);
}

function preview(body) {
  if (body === undefined) return "(not read)";
  if (body instanceof Uint8Array || body instanceof ArrayBuffer) return `(${body.byteLength} bytes)`;
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return text.length > 400 ? `${text.slice(0, 400)}…` : text;
}
