// The intake page: a request is sealed here, in the submitter's browser, and
// only the sealed cell reaches the relay. The formats are those of
// src/backchannel/protocol/intake.py (docs/spec/intake-v1.md); the HPKE suite
// (X-Wing, HKDF-SHA256, ChaCha20-Poly1305) comes from the vendored hpke.min.js.
import { Chacha20Poly1305, CipherSuite, HkdfSha256, XWing } from "./hpke.min.js";

const LABEL = "backchannel/v1/";
const CARD_PREFIX = "BACKCHANNEL-INTAKE-1:";
const PUBLIC_LEN = 1216;
const ENC_LEN = 1120;
const REQUEST_PLAINTEXT_SIZE = 4096 - ENC_LEN - 16;
const ANSWER_CELL_SIZE = 4096;
const CODE_LEN = 16;
const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
export const KINDS = { interview: 1, "media-tour": 2, meeting: 3, other: 4 };

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });
const label = (name) => utf8.encode(LABEL + name);

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function u32(n) {
  return new Uint8Array([(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
}

function u64(n) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromBase64(text) {
  const bin = atob(text.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(text.length / 4) * 4, "="));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

export function toBase64(bytes) {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", concat(...parts)));
}

async function hkdf(ikm, info, length = 32) {
  const key = await crypto.subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info },
    key,
    length * 8,
  );
  return new Uint8Array(bits);
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.at = 0;
  }
  take(n) {
    if (this.at + n > this.bytes.length) throw new Error("the intake card is damaged (truncated)");
    const out = this.bytes.slice(this.at, this.at + n);
    this.at += n;
    return out;
  }
  u8() {
    return this.take(1)[0];
  }
  text() {
    const n = new DataView(this.take(4).buffer).getUint32(0);
    return fromUtf8.decode(this.take(n));
  }
}

// --- the card ---------------------------------------------------------------------

export async function parseCard(text) {
  let t = text.trim();
  if (t.includes("#")) t = t.slice(t.indexOf("#") + 1);
  t = decodeURIComponent(t);
  if (!t.startsWith(CARD_PREFIX)) throw new Error("this is not an intake card");
  const raw = fromBase64(t.slice(CARD_PREFIX.length));
  const r = new Reader(raw);
  if (r.u8() !== 1) throw new Error("this intake card has a version this page does not know");
  const card = {
    missionName: r.text(),
    missionId: r.take(32),
    relayUrl: r.text(),
    tenantId: r.text(),
    publicKey: r.take(PUBLIC_LEN),
    powBits: r.u8(),
  };
  if (r.at !== raw.length) throw new Error("the intake card is damaged (trailing bytes)");
  const digest = toHex((await sha256(label("intake/card"), raw)).slice(0, 16)).toUpperCase();
  card.fingerprint = digest.match(/.{4}/g).join(" ");
  return card;
}

// --- sealing ----------------------------------------------------------------------

function suite() {
  return new CipherSuite({ kem: new XWing(), kdf: new HkdfSha256(), aead: new Chacha20Poly1305() });
}

export function encodeRequest(kind, subject, body, contact, code) {
  if (!KINDS[kind]) throw new Error("unknown request kind");
  const fields = [subject, body, contact].map((s) => utf8.encode(s.normalize("NFC")));
  if (fields[0].length > 200) throw new Error("the subject is too long (at most 200 bytes)");
  if (fields[2].length > 200) throw new Error("the contact is too long (at most 200 bytes)");
  const raw = concat(
    new Uint8Array([1, KINDS[kind]]),
    code,
    ...fields.flatMap((f) => [u32(f.length), f]),
  );
  if (raw.length > REQUEST_PLAINTEXT_SIZE) throw new Error("the request is too long");
  return concat(raw, new Uint8Array(REQUEST_PLAINTEXT_SIZE - raw.length));
}

export async function sealRequest(card, plaintext) {
  const s = suite();
  const pk = await s.kem.importKey("raw", card.publicKey.slice().buffer, true);
  const info = concat(label("intake/request"), card.missionId);
  const sealed = await s.seal({ recipientPublicKey: pk, info: info.buffer }, plaintext.buffer);
  return concat(new Uint8Array(sealed.enc), new Uint8Array(sealed.ct));
}

/** For a mission's own tools and the interop tests: open a cell with the X-Wing seed. */
export async function openRequest(card, seed, cell) {
  const s = suite();
  const sk = await s.kem.importKey("raw", seed.slice().buffer, false);
  const info = concat(label("intake/request"), card.missionId);
  const pt = new Uint8Array(
    await s.open(
      { recipientKey: sk, enc: cell.slice(0, ENC_LEN).buffer, info: info.buffer },
      cell.slice(ENC_LEN).buffer,
    ),
  );
  const r = new Reader(pt);
  if (r.u8() !== 1) throw new Error("unknown request version");
  const kind = Object.keys(KINDS).find((k) => KINDS[k] === pt[1]);
  r.u8();
  const code = r.take(CODE_LEN);
  return { kind, code, subject: r.text(), body: r.text(), contact: r.text() };
}

// --- reply codes and answers --------------------------------------------------------

export function newReplyCode() {
  return crypto.getRandomValues(new Uint8Array(CODE_LEN));
}

export function formatReplyCode(code) {
  let bits = 0;
  let value = 0;
  let out = "";
  for (const b of code) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out.match(/.{1,5}/g).join("-");
}

export function parseReplyCode(text) {
  const clean = text.toUpperCase().replace(/[-\s]/g, "");
  if (clean.length !== 26 || [...clean].some((c) => !B32.includes(c))) {
    throw new Error("that is not a reply code (26 letters and digits, in groups of five)");
  }
  const out = new Uint8Array(CODE_LEN);
  let bits = 0;
  let value = 0;
  let i = 0;
  for (const c of clean) {
    value = (value << 5) | B32.indexOf(c);
    bits += 5;
    if (bits >= 8 && i < CODE_LEN) {
      out[i++] = (value >>> (bits - 8)) & 255;
      bits -= 8;
    }
  }
  return out;
}

export async function replyId(card, code) {
  return hkdf(code, concat(label("intake/reply-id"), card.missionId));
}

export async function openAnswer(card, code, cell) {
  if (cell.length !== ANSWER_CELL_SIZE) throw new Error("an answer has the wrong size");
  const id = await replyId(card, code);
  const key = await hkdf(code, concat(label("intake/reply-key"), card.missionId));
  const ctx = new Chacha20Poly1305().createEncryptionContext(key.buffer);
  const aad = concat(label("intake/answer"), id);
  const pt = new Uint8Array(await ctx.open(cell.slice(0, 12).buffer, cell.slice(12).buffer, aad.buffer));
  const r = new Reader(pt);
  if (r.u8() !== 1) throw new Error("unknown answer version");
  return r.text();
}

// --- proof of work ------------------------------------------------------------------

function zeroBits(digest) {
  let bits = 0;
  for (const b of digest) {
    if (b) return bits + Math.clz32(b) - 24;
    bits += 8;
  }
  return bits;
}

export async function solvePow(tenantId, bucket, cell, bits) {
  const tenant = utf8.encode(tenantId);
  const prefix = concat(label("intake/pow"), new Uint8Array([tenant.length]), tenant, u64(bucket), await sha256(cell));
  const batch = 512;
  for (let start = 0; ; start += batch) {
    const tries = [];
    for (let n = start; n < start + batch; n++) tries.push(sha256(prefix, u64(n)));
    const digests = await Promise.all(tries);
    const found = digests.findIndex((d) => zeroBits(d) >= bits);
    if (found >= 0) return start + found;
  }
}

// --- talking to the relay ------------------------------------------------------------

async function relayJson(path, init) {
  const answer = await fetch(path, { ...init, credentials: "omit", cache: "no-store" });
  let body = {};
  try {
    body = await answer.json();
  } catch {
    body = {};
  }
  return { status: answer.status, body };
}

export async function submit(card, kind, subject, text, contact) {
  const code = newReplyCode();
  const cell = await sealRequest(card, encodeRequest(kind, subject, text, contact, code));
  const base = `/v1/intake/${encodeURIComponent(card.tenantId)}`;
  const pow = await relayJson(`${base}/pow`);
  if (pow.status !== 200) throw new Error(pow.body.error || "the relay does not take requests for this mission");
  const nonce = await solvePow(card.tenantId, pow.body.bucket, cell, pow.body.bits);
  const sent = await relayJson(`${base}/requests`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ cell: toBase64(cell), bucket: pow.body.bucket, nonce }),
  });
  if (sent.status !== 200 && sent.status !== 201) {
    throw new Error(sent.body.error || `the relay refused the request (${sent.status})`);
  }
  return formatReplyCode(code);
}

// The relay's error while the mission's intake is closed (docs/spec/relay-api.md): it then
// shows no answer, not even one already sent, until the mission opens the intake again.
// Its other 404, "no answer under this reply code (yet)", means no answer.
export const INTAKE_CLOSED = "this mission takes no requests on this relay; check the intake card";
export const CLOSED = Object.freeze({ closed: true }); // never an answer's text
export const CLOSED_SAID =
  "The mission's intake is closed. While it is, no answer can be read here, not even one " +
  "the mission already sent. Look again once the mission has opened it again.";

// The answer, null while there is none, or CLOSED while the intake is closed.
export async function checkAnswer(card, codeText) {
  const code = parseReplyCode(codeText);
  const id = toHex(await replyId(card, code));
  const got = await relayJson(`/v1/intake/${encodeURIComponent(card.tenantId)}/answers/${id}`);
  if (got.status === 404) return got.body.error === INTAKE_CLOSED ? CLOSED : null;
  if (got.status !== 200) throw new Error(got.body.error || `the relay failed (${got.status})`);
  return openAnswer(card, code, fromBase64(got.body.cell));
}

// --- the page -------------------------------------------------------------------------

function show(id, text) {
  const el = document.getElementById(id);
  el.textContent = text;
  el.hidden = !text;
}

async function main() {
  let card = null;
  const load = async (text) => {
    try {
      card = await parseCard(text);
    } catch (e) {
      show("card-error", e.message);
      return;
    }
    show("card-error", "");
    document.getElementById("mission-name").textContent = card.missionName;
    document.getElementById("fingerprint").textContent = card.fingerprint;
    document.getElementById("card-entry").hidden = true;
    document.getElementById("mission").hidden = false;
  };
  if (location.hash.length > 1) await load(location.hash.slice(1));
  document.getElementById("card-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    await load(document.getElementById("card-text").value);
  });
  document.getElementById("request-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = document.getElementById("send");
    button.disabled = true;
    show("send-error", "");
    show("send-status", "Sealing your request in this browser…");
    const started = performance.now();
    try {
      const f = ev.target.elements;
      const code = await submit(card, f.kind.value, f.subject.value, f.body.value, f.contact.value);
      document.getElementById("reply-code").textContent = code;
      document.getElementById("sent").hidden = false;
      document.getElementById("request-form").hidden = true;
      show("send-status", "");
      document.body.dataset.submitMs = String(Math.round(performance.now() - started));
    } catch (e) {
      show("send-status", "");
      show("send-error", e.message);
    } finally {
      button.disabled = false;
    }
  });
  document.getElementById("check-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    show("check-error", "");
    show("answer", "");
    try {
      const answer = await checkAnswer(card, document.getElementById("check-code").value);
      const closed = answer === CLOSED && CLOSED_SAID;
      show("answer", answer === null ? "There is no answer under this code." : closed || answer);
    } catch (e) {
      show("check-error", e.message);
    }
  });
  document.body.dataset.ready = "1";
}

if (typeof document !== "undefined" && document.getElementById("request-form")) {
  main();
}
