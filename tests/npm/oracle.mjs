// The providers' official npm SDKs as signing and verification oracles for the Python tests
// (tests/providers/test_npm_oracles.py). One process serves a whole test module:
//
//   stdin:  one JSON request per line, or a JSON array of requests per line (a batch)
//   stdout: one JSON line per input line: the result, or the array of results
//
// A request: {"sdk": "github" | "shopify" | "linear", "op": "sign" | "verify",
//             "secret": "...", "body_b64": "<base64 of the raw body>" (or "body": "<text>"),
//             "signature": "<header value>", "headers": {...} (Shopify: the other headers)}
// or {"op": "versions"}: the installed version of each SDK.
// A result: {"ok": true, "signature": "..."} for sign; {"ok": true, "valid": bool, "reason": "..."}
// for verify (an exception thrown by the SDK's verifier is a refusal: valid false, reason its
// message); {"ok": false, "error": "..."} when the request itself could not be served.
//
// Nothing here reaches the network: the SDKs are only asked to compute and compare HMACs.

import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";

// Only protocol lines go to stdout: anything an SDK logs goes to stderr.
console.log = console.info = console.debug = console.warn = (...args) => console.error(...args);

import { sign as octokitSign, verify as octokitVerify } from "@octokit/webhooks-methods";
import "@shopify/shopify-api/adapters/node";
import { ApiVersion, LogSeverity, shopifyApi } from "@shopify/shopify-api";
import { HashFormat, createSHA256HMAC } from "@shopify/shopify-api/runtime";
import { LinearWebhookClient } from "@linear/sdk/webhooks";

const PACKAGES = ["@octokit/webhooks-methods", "@shopify/shopify-api", "@linear/sdk"];

function installedVersion(name) {
  const url = new URL(`./node_modules/${name}/package.json`, import.meta.url);
  return JSON.parse(readFileSync(url, "utf8")).version;
}

function rawBody(req) {
  if (typeof req.body_b64 === "string") return Buffer.from(req.body_b64, "base64");
  if (typeof req.body === "string") return Buffer.from(req.body, "utf8");
  throw new TypeError("request needs body_b64 or body");
}

// Octokit and Shopify take the body as a JavaScript string: bytes that are not UTF-8 have no
// faithful string form, so such a request is refused here rather than silently re-encoded.
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
function textBody(req) {
  return strictUtf8.decode(rawBody(req));
}

// --- GitHub: @octokit/webhooks-methods (sign, verify) ------------------------------------------

async function github(req) {
  const body = textBody(req);
  if (req.op === "sign") return { signature: await octokitSign(req.secret, body) };
  return verdict(async () => ({ valid: await octokitVerify(req.secret, body, req.signature) }));
}

// --- Shopify: @shopify/shopify-api (webhooks.validate; runtime createSHA256HMAC to sign) -------

const shopifyApps = new Map();
function shopifyApp(secret) {
  if (!shopifyApps.has(secret)) {
    shopifyApps.set(
      secret,
      shopifyApi({
        apiKey: "oracle-api-key",
        apiSecretKey: secret,
        apiVersion: ApiVersion.July26,
        hostName: "gateway.example",
        isEmbeddedApp: false,
        logger: { level: LogSeverity.Error, log: async (_severity, message) => console.error(message) },
      }),
    );
  }
  return shopifyApps.get(secret);
}

// The headers Shopify sends with every webhook: validate() reports any missing one.
const SHOPIFY_CONTEXT = {
  "x-shopify-topic": "orders/paid",
  "x-shopify-shop-domain": "acme.myshopify.com",
  "x-shopify-api-version": ApiVersion.July26,
  "x-shopify-webhook-id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
};

async function shopify(req) {
  const body = textBody(req);
  if (req.op === "sign") return { signature: await createSHA256HMAC(req.secret, body, HashFormat.Base64) };
  const headers = { ...SHOPIFY_CONTEXT, ...(req.headers ?? {}) };
  if (req.signature !== undefined && req.signature !== null) headers["x-shopify-hmac-sha256"] = req.signature;
  return verdict(async () => {
    const result = await shopifyApp(req.secret).webhooks.validate({
      rawBody: body,
      rawRequest: { method: "POST", url: "/webhooks/shopify", headers },
      rawResponse: {},
    });
    return { valid: result.valid === true, reason: result.reason ?? null };
  });
}

// --- Linear: @linear/sdk LinearWebhookClient (verify only: the SDK does not sign) --------------

async function linear(req) {
  const body = rawBody(req);
  if (req.op === "sign") throw new Error("@linear/sdk has no signer, only LinearWebhookClient.verify");
  return verdict(async () => ({ valid: new LinearWebhookClient(req.secret).verify(body, req.signature) === true }));
}

// The SDK's verdict: an exception its verifier throws counts as a refusal, with its message.
async function verdict(check) {
  try {
    return await check();
  } catch (err) {
    return { valid: false, reason: `threw: ${err?.message ?? err}` };
  }
}

const SDKS = { github, shopify, linear };

async function serve(req) {
  try {
    if (req === null || typeof req !== "object") throw new TypeError("a request is a JSON object");
    if (req.op === "versions") {
      return { ok: true, node: process.version, versions: Object.fromEntries(PACKAGES.map((p) => [p, installedVersion(p)])) };
    }
    const handler = SDKS[req.sdk];
    if (!handler) throw new TypeError(`unknown sdk ${JSON.stringify(req.sdk)}`);
    if (req.op !== "sign" && req.op !== "verify") throw new TypeError(`unknown op ${JSON.stringify(req.op)}`);
    return { ok: true, ...(await handler(req)) };
  } catch (err) {
    return { ok: false, error: String(err?.message ?? err) };
  }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    const parsed = JSON.parse(line);
    answer = Array.isArray(parsed) ? await Promise.all(parsed.map(serve)) : await serve(parsed);
  } catch (err) {
    answer = { ok: false, error: `bad request line: ${err?.message ?? err}` };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
