// Verifies an event in the browser, trusting nothing the server computed: its leaf hash is
// recomputed from its content (RFC 8785 canonical JSON, SHA-256 with the RFC 9162 leaf prefix),
// its inclusion proof is checked against the checkpoint's root (RFC 9162 §2.1.3.2), and the
// checkpoint's C2SP signed note is checked with the log's Ed25519 key pinned in the page's
// configuration (WebCrypto).

const enc = new TextEncoder();

// Members of an event as the API serves it that are not its signed content: the log's
// position and hash, and its commit time.
const NOT_CONTENT = ["seq", "leaf_hash", "committed_at"];

// RFC 8785: object members sorted by UTF-16 code units, strings and numbers as ECMAScript
// writes them (JSON.stringify), no whitespace.
export function canonical(value) {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) {
      throw new Error("a number JSON cannot hold");
    }
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return "[" + value.map(canonical).join(",") + "]";
  }
  const keys = Object.keys(value).filter((k) => value[k] !== undefined).sort();
  return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
}

// The signed content of a served event: without the log's own members; `received_at` is signed
// only together with `submitted_by` (the service's attestation of the writer).
export function content(event) {
  const c = {};
  for (const [k, v] of Object.entries(event)) {
    if (NOT_CONTENT.includes(k) || v === null || v === undefined) continue;
    c[k] = v;
  }
  if (c.submitted_by === undefined) delete c.received_at;
  return c;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(text) {
  if (!/^([0-9a-f]{2})*$/i.test(text)) throw new Error("not hex");
  return Uint8Array.from(text.match(/../g) || [], (h) => parseInt(h, 16));
}

function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

// SHA-256(0x00 || canonical content).
export async function leafHash(event) {
  return sha256(concat(new Uint8Array([0]), enc.encode(canonical(content(event)))));
}

async function node(left, right) {
  return sha256(concat(new Uint8Array([1]), left, right));
}

// RFC 9162 §2.1.3.2: the root the proof leads to from `leaf` at `index` in a tree of `size`.
export async function rootFromInclusion(leaf, index, size, proof) {
  if (index >= size) throw new Error("the index is outside the tree");
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) throw new Error("the proof is longer than the tree is deep");
    if (fn % 2 === 1 || fn === sn) {
      r = await node(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = await node(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error("the proof is shorter than the tree is deep");
  return r;
}

// A C2SP verifier key: `<name>+<key hash hex8>+<base64(0x01 || Ed25519 key)>`.
// The name holds no `+`; the base64 key may.
export function parseVerifierKey(text) {
  const m = /^([^+\s]+)\+([0-9a-fA-F]{8})\+([A-Za-z0-9+/]+=*)$/.exec(text.trim());
  if (!m) throw new Error("a verifier key is name+hash+key");
  const [, name, id, b64] = m;
  const raw = fromBase64(b64);
  if (raw.length !== 33 || raw[0] !== 1) throw new Error("not an Ed25519 verifier key");
  return { name, id: id.toLowerCase(), key: raw.slice(1) };
}

// Checks a signed note's signature by `vkey`; answers the checkpoint it signs.
export async function verifyNote(note, vkey) {
  const split = note.indexOf("\n\n");
  if (split < 0) throw new Error("the note has no signature");
  const body = note.slice(0, split + 1);
  const lines = body.split("\n");
  const [origin, sizeText, rootText] = lines;
  if (origin !== vkey.name) throw new Error(`the note is of ${origin}, the pinned key of ${vkey.name}`);
  let signature = null;
  for (const line of note.slice(split + 2).split("\n")) {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m || m[1] !== vkey.name) continue;
    const bytes = fromBase64(m[2]);
    if (bytes.length === 68 && hex(bytes.slice(0, 4)) === vkey.id) signature = bytes.slice(4);
  }
  if (!signature) throw new Error("the checkpoint carries no signature by the pinned key");
  const key = await crypto.subtle.importKey("raw", vkey.key, { name: "Ed25519" }, false, ["verify"]);
  const ok = await crypto.subtle.verify({ name: "Ed25519" }, key, signature, enc.encode(body));
  if (!ok) throw new Error("the checkpoint's signature does not verify with the pinned key");
  return { origin, treeSize: Number(sizeText), root: fromBase64(rootText) };
}

function equal(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// The verdict on an event proof (`GET /api/v1/audit/events/{id}/proof`) with the pinned key:
// `{ ok: true, treeSize }`, or `{ ok: false, step, why }` naming the first check that failed.
export async function verifyProof(proof, pinnedKey) {
  const fail = (step, why) => ({ ok: false, step, why });
  if (!pinnedKey) return fail("key", "no public key is pinned in the page's configuration");
  let vkey;
  try {
    vkey = parseVerifierKey(pinnedKey);
  } catch (e) {
    return fail("key", `the pinned key: ${e.message}`);
  }
  const leaf = await leafHash(proof.event);
  if (hex(leaf) !== String(proof.event.leaf_hash).toLowerCase()) {
    return fail("content", "the event's content does not hash to the leaf the log recorded");
  }
  let signed;
  try {
    signed = await verifyNote(proof.checkpoint.note, vkey);
  } catch (e) {
    return fail("signature", e.message);
  }
  if (signed.treeSize !== proof.tree_size) {
    return fail("proof", "the proof is for another tree size than the signed checkpoint");
  }
  let root;
  try {
    root = await rootFromInclusion(leaf, proof.leaf_index, proof.tree_size, proof.inclusion_proof.map(fromHex));
  } catch (e) {
    return fail("proof", e.message);
  }
  if (!equal(root, signed.root)) {
    return fail("proof", "the inclusion proof does not lead to the signed root");
  }
  return { ok: true, treeSize: signed.treeSize };
}
