// The dashboard's filter language: parse, evaluate, and split into a hub subscription.
//
// Wireshark-like, over every dumpling field:
//   chef == "Http1Chef" and status >= 400      ip.addr == 10.0.0.1      latency > 50ms
//   name ~ "example"     not chef in {ARPChef, PacketCountChef}     "free text"
// No DOM here: the page, the node unit tests and the fuzzer all load this same file.
// Errors are FilterError with the character range they are about, so the page can
// underline what is wrong where it was typed.

export class FilterError extends Error {
  constructor(message, start, end) {
    super(message);
    this.name = "FilterError";
    this.start = start;
    this.end = Math.max(end, start + 1);
  }
}

// Units a number may carry; values are in the fields' own units (seconds, bytes). Small
// units divide (50000 / 1e6 is 0.05; 50000 * 1e-6 is not), large ones multiply.
const UNITS = {
  ns: -1e9, us: -1e6, "µs": -1e6, ms: -1e3, s: 1, sec: 1, min: 60, h: 3600,
  b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3,
};
const scale = (n, unit) => (UNITS[unit] < 0 ? n / -UNITS[unit] : n * UNITS[unit]);
const NUMBER = /^(-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)([a-zµ]*)$/i;
const FIELD = /^[A-Za-z_@][\w.\-@]*$/;
const KEYWORDS = new Set(["and", "or", "not", "in", "contains", "matches"]);
const CMP_OPS = new Set(["==", "!=", ">", ">=", "<", "<=", "~", "contains", "matches"]);
const MAX_LENGTH = 4000;   // an expression longer than this is a paste accident
const MAX_DEPTH = 64;      // nesting: keeps the recursive parser off the stack limit

// Metadata fields reachable by their bare name (payload fields of the same name lose:
// a chef has no business naming a payload field "chef").
const META = new Set(["chef", "kitchen", "driver", "sequence", "creation_time", "capture_time"]);

// -- lexer ---------------------------------------------------------------------------

function lex(text) {
  const toks = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (/\s/.test(c)) { i++; continue; }
    const start = i;
    const two = text.slice(i, i + 2);
    if (["==", "!=", ">=", "<=", "&&", "||"].includes(two)) {
      toks.push({ t: "op", v: two === "&&" ? "and" : two === "||" ? "or" : two, start, end: i + 2 });
      i += 2;
      continue;
    }
    if ("(){},".includes(c)) { toks.push({ t: c, v: c, start, end: i + 1 }); i++; continue; }
    if ("<>~!".includes(c)) {
      toks.push({ t: "op", v: c === "!" ? "not" : c, start, end: i + 1 });
      i++;
      continue;
    }
    if (c === "=") throw new FilterError("'=' alone is not an operator: use ==", i, i + 1);
    if (c === "&" || c === "|") throw new FilterError(`'${c}' alone is not an operator: use ${c}${c}`, i, i + 1);
    if (c === '"' || c === "'") {
      let s = "";
      i++;
      for (;;) {
        if (i >= n) throw new FilterError("unterminated string", start, n);
        const ch = text[i];
        if (ch === c) { i++; break; }
        if (ch === "\\") {
          if (i + 1 >= n) throw new FilterError("unterminated string", start, n);
          const e = text[i + 1];
          s += e === "n" ? "\n" : e === "t" ? "\t" : e;
          i += 2;
          continue;
        }
        s += ch;
        i++;
      }
      toks.push({ t: "str", v: s, start, end: i });
      continue;
    }
    let j = i;
    while (j < n && !/[\s(){},=!<>~&|"']/.test(text[j])) j++;
    const w = text.slice(i, j);
    const low = w.toLowerCase();
    if (low === "and" || low === "or" || low === "not") toks.push({ t: "op", v: low, start, end: j });
    else toks.push({ t: "word", v: w, start, end: j });
    i = j;
  }
  toks.push({ t: "eof", v: "", start: n, end: n });
  return toks;
}

// -- parser --------------------------------------------------------------------------

// A value as typed: numbers (with units) compare as numbers, everything else as text.
function value(tok) {
  if (tok.t === "str") return { kind: "str", v: tok.v, raw: tok.v, quoted: true };
  const w = tok.v;
  const m = NUMBER.exec(w);
  if (m) {
    const unit = m[2].toLowerCase();
    if (!unit) return { kind: "num", v: Number(m[1]), raw: w };
    if (Object.prototype.hasOwnProperty.call(UNITS, unit)) return { kind: "num", v: scale(Number(m[1]), unit), raw: w };
  }
  const low = w.toLowerCase();
  if (low === "true" || low === "false") return { kind: "bool", v: low === "true", raw: w };
  if (low === "null") return { kind: "null", v: null, raw: w };
  return { kind: "str", v: w, raw: w, quoted: false };
}

/** Parse an expression; an empty (or all-space) one is null: everything passes. */
export function parse(text) {
  if (typeof text !== "string") throw new FilterError("the filter must be text", 0, 0);
  if (text.length > MAX_LENGTH) {
    throw new FilterError(`the filter is longer than ${MAX_LENGTH} characters`, MAX_LENGTH, text.length);
  }
  const toks = lex(text);
  let k = 0;
  let depth = 0;
  const peek = () => toks[k];
  const next = () => toks[k++];
  const isOp = (v) => peek().t === "op" && peek().v === v;
  const what = (t) => (t.t === "eof" ? "the end" : `'${t.t === "str" ? JSON.stringify(t.v) : t.v}'`);

  function orExpr() {
    const first = andExpr();
    const args = [first];
    while (isOp("or")) { next(); args.push(andExpr()); }
    return args.length === 1 ? first : { op: "or", args, start: first.start, end: args[args.length - 1].end };
  }
  function andExpr() {
    const first = notExpr();
    const args = [first];
    for (;;) {
      if (isOp("and")) { next(); args.push(notExpr()); continue; }
      break;
    }
    return args.length === 1 ? first : { op: "and", args, start: first.start, end: args[args.length - 1].end };
  }
  function notExpr() {
    if (isOp("not")) {
      const t = next();
      if (++depth > MAX_DEPTH) throw new FilterError("the filter nests too deeply", t.start, t.end);
      const arg = notExpr();
      depth--;
      return { op: "not", arg, start: t.start, end: arg.end };
    }
    return primary();
  }
  function primary() {
    const t = peek();
    if (t.t === "(") {
      next();
      if (++depth > MAX_DEPTH) throw new FilterError("the filter nests too deeply", t.start, t.end);
      const e = orExpr();
      depth--;
      const close = peek();
      if (close.t !== ")") throw new FilterError(`expected ')' to close the '(' here, found ${what(close)}`, t.start, close.end);
      next();
      return { ...e, start: t.start, end: close.end, paren: true };
    }
    if (t.t === "str") {
      next();
      return { op: "text", value: t.v, start: t.start, end: t.end };
    }
    if (t.t !== "word") throw new FilterError(`expected a field name, found ${what(t)}`, t.start, t.end);
    next();
    const field = t.v;
    if (KEYWORDS.has(field.toLowerCase()) || !FIELD.test(field)) {
      throw new FilterError(`'${field}' is not a field name`, t.start, t.end);
    }
    const o = peek();
    let cmp = null;
    if (o.t === "op" && CMP_OPS.has(o.v)) cmp = o.v;
    else if (o.t === "word" && ["contains", "matches", "in"].includes(o.v.toLowerCase())) cmp = o.v.toLowerCase();
    if (cmp === null) return { op: "has", field, start: t.start, end: t.end };
    next();
    if (cmp === "in") {
      const open = peek();
      if (open.t !== "{") throw new FilterError(`expected '{' after 'in', found ${what(open)}`, open.start, open.end);
      next();
      const values = [];
      while (peek().t !== "}") {
        const v = peek();
        if (v.t !== "word" && v.t !== "str") throw new FilterError(`expected a value or '}', found ${what(v)}`, v.start, v.end);
        next();
        values.push(value(v));
        if (peek().t === ",") next();
      }
      const close = next();
      if (!values.length) throw new FilterError("an empty set matches nothing", open.start, close.end);
      return { op: "in", field, values, start: t.start, end: close.end };
    }
    const v = peek();
    if (v.t !== "word" && v.t !== "str") {
      throw new FilterError(`expected a value after '${o.v}', found ${what(v)}`, v.start, v.end);
    }
    next();
    const val = value(v);
    if (cmp === "matches") cmp = "~";
    if (cmp === "~") {
      try { val.re = new RegExp(String(val.v), "i"); } catch (err) {
        throw new FilterError(`not a regular expression: ${err.message}`, v.start, v.end);
      }
    }
    if ([">", ">=", "<", "<="].includes(cmp) && val.kind !== "num") {
      throw new FilterError(`'${o.v}' compares numbers: ${what(v)} is not a number`, v.start, v.end);
    }
    return { op: "cmp", field, cmp, value: val, start: t.start, end: v.end };
  }

  if (peek().t === "eof") return null;
  const ast = orExpr();
  const rest = peek();
  if (rest.t !== "eof") {
    const hint = rest.t === "word" || rest.t === "str" || rest.t === "(" ? " (missing 'and' or 'or'?)" : "";
    throw new FilterError(`unexpected ${what(rest)}${hint}`, rest.start, rest.end);
  }
  return ast;
}

// -- printing ------------------------------------------------------------------------

function fmtValue(v) {
  if (v.kind === "str" && (v.quoted || !/^[^\s(){},=!<>~&|"']+$/.test(v.v) ||
      ["and", "or", "not"].includes(v.v.toLowerCase()))) return JSON.stringify(v.v);
  return v.raw;
}

/** Canonical text of an expression (parse(format(ast)) gives the same tree back). */
export function format(ast) {
  if (!ast) return "";
  const sub = (a, parent) => {
    const s = format(a);
    const needs = (a.op === "or" && parent !== "or") || (a.op === "and" && parent === "not");
    return needs ? `(${s})` : s;
  };
  switch (ast.op) {
    case "or": return ast.args.map((a) => sub(a, "or")).join(" or ");
    case "and": return ast.args.map((a) => sub(a, "and")).join(" and ");
    case "not": return `not ${sub(ast.arg, "not")}`;
    case "text": return JSON.stringify(ast.value);
    case "has": return ast.field;
    case "in": return `${ast.field} in {${ast.values.map(fmtValue).join(", ")}}`;
    case "cmp": return `${ast.field} ${ast.cmp} ${fmtValue(ast.value)}`;
    default: throw new Error(`unknown node ${ast.op}`);
  }
}

// -- evaluation ----------------------------------------------------------------------

const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

/** The address part of "10.0.0.1:80", "[::1]:80", "::1" or "10.0.0.1". */
export function hostOf(endpoint) {
  const s = String(endpoint);
  if (s.startsWith("[")) { const e = s.indexOf("]"); return e > 0 ? s.slice(1, e) : s; }
  const c = s.indexOf(":");
  return c > 0 && c === s.lastIndexOf(":") ? s.slice(0, c) : s;
}

function portOf(endpoint) {
  const m = /:(\d{1,5})$/.exec(String(endpoint));
  return m && (String(endpoint).startsWith("[") || String(endpoint).indexOf(":") === String(endpoint).lastIndexOf(":"))
    ? Number(m[1]) : null;
}

// Where the endpoints of a dumpling are: most chefs say src/dst and flow.client/server;
// ARP says sender_ip/target_ip; Channel Access names its server.
function endpoints(p, side) {
  if (!isObj(p)) return [];
  const out = [];
  const flow = isObj(p.flow) ? p.flow : {};
  const add = (v) => { if (typeof v === "string" && v) out.push(v); };
  if (side !== "dst") { add(p.src); add(flow.client); add(p.sender_ip); add(p.client); }
  if (side !== "src") { add(p.dst); add(flow.server); add(p.target_ip); add(p.server); add(p.server_address); }
  return out;
}

function path(obj, parts) {
  let cur = [obj];
  for (const part of parts) {
    const nxt = [];
    for (const c of cur) {
      if (isObj(c) && Object.prototype.hasOwnProperty.call(c, part)) nxt.push(c[part]);
      else if (Array.isArray(c)) {
        for (const x of c) if (isObj(x) && Object.prototype.hasOwnProperty.call(x, part)) nxt.push(x[part]);
      }
    }
    cur = nxt;
    if (!cur.length) return [];
  }
  const flat = [];
  for (const c of cur) if (Array.isArray(c)) flat.push(...c); else flat.push(c);
  return flat;
}

/** Every value of ``field`` in an item ({d: dumpling, t?: time, summary?: text}). */
export function fieldValues(item, field) {
  const d = item.d || {};
  const m = isObj(d.metadata) ? d.metadata : {};
  const p = d.payload;
  switch (field) {
    case "ip.addr": case "addr": case "ip": return [...new Set(endpoints(p).map(hostOf))];
    case "ip.src": return endpoints(p, "src").map(hostOf);
    case "ip.dst": return endpoints(p, "dst").map(hostOf);
    case "port": case "tcp.port": case "udp.port":
      return endpoints(p).map(portOf).filter((x) => x !== null);
    case "time": return item.t === undefined || item.t === null ? [] : [item.t];
    case "summary":
      if (item.summary !== undefined) return [item.summary];
      break;
    default:
  }
  if (field.startsWith("metadata.")) return path(m, field.slice(9).split("."));
  if (field.startsWith("payload.")) return path(p, field.slice(8).split("."));
  if (META.has(field)) return field in m ? [m[field]] : [];
  const parts = field.split(".");
  const got = path(p, parts);
  return got.length ? got : path(m, parts);
}

function ipv4(s) {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  const b = m.slice(1).map(Number);
  if (b.some((x) => x > 255)) return null;
  return ((b[0] << 24) >>> 0) + (b[1] << 16) + (b[2] << 8) + b[3];
}

function equal(x, v) {
  if (x === null || x === undefined) return v.kind === "null";
  if (v.kind === "null") return false;
  if (typeof x === "boolean") return v.kind === "bool" ? x === v.v : String(x) === v.raw;
  if (v.kind === "num") {
    const n = typeof x === "number" ? x : typeof x === "string" && x.trim() !== "" ? Number(x) : NaN;
    if (!Number.isNaN(n)) return n === v.v;
  }
  if (typeof x === "object") return false;
  const s = String(x);
  if (s === String(v.v)) return true;
  // 10.0.0.0/8 matches any address in it.
  const cidr = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(String(v.v));
  if (cidr) {
    const a = ipv4(s), net = ipv4(cidr[1]), bits = Number(cidr[2]);
    if (a !== null && net !== null && bits <= 32) {
      const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
      return ((a & mask) >>> 0) === ((net & mask) >>> 0);
    }
  }
  return false;
}

function order(x, v, cmp) {
  const n = typeof x === "number" ? x : typeof x === "string" && x.trim() !== "" ? Number(x) : NaN;
  if (Number.isNaN(n)) return false;
  switch (cmp) {
    case ">": return n > v.v;
    case ">=": return n >= v.v;
    case "<": return n < v.v;
    default: return n <= v.v;
  }
}

function asText(x) {
  if (typeof x === "string") return x;
  try { return JSON.stringify(x) ?? ""; } catch (_) { return ""; }
}

/** A predicate over items for a parsed expression (null: everything passes).
 *  Fields with several values (ip.addr, lists) match when any value does; != is "no value
 *  equals"; a comparison on a field the dumpling lacks is false either way. */
export function compile(ast) {
  if (!ast) return () => true;
  const ev = (a, item) => {
    switch (a.op) {
      case "or": return a.args.some((x) => ev(x, item));
      case "and": return a.args.every((x) => ev(x, item));
      case "not": return !ev(a.arg, item);
      case "text": {
        if (item.hay === undefined || item.hay === null) {
          item.hay = `${item.summary ?? ""}\n${asText(item.d)}`.slice(0, 40000).toLowerCase();
        }
        return item.hay.includes(a.value.toLowerCase());
      }
      case "has": return fieldValues(item, a.field).some((x) => x !== null && x !== false);
      case "in": {
        const xs = fieldValues(item, a.field);
        return xs.some((x) => a.values.some((v) => equal(x, v)));
      }
      case "cmp": {
        const xs = fieldValues(item, a.field);
        if (!xs.length) return false;
        switch (a.cmp) {
          case "==": return xs.some((x) => equal(x, a.value));
          case "!=": return !xs.some((x) => equal(x, a.value));
          case "~": return xs.some((x) => a.value.re.test(asText(x)));
          case "contains": {
            const needle = String(a.value.v).toLowerCase();
            return xs.some((x) => asText(x).toLowerCase().includes(needle));
          }
          default: return xs.some((x) => order(x, a.value, a.cmp));
        }
      }
      default: return false;
    }
  };
  return (item) => ev(ast, item);
}

// -- the hub's share -----------------------------------------------------------------

const SUB_KEYS = { chef: "chefs", kitchen: "kitchens", driver: "drivers" };
const DRIVERS = new Set(["packet", "interval"]);

// The allow-list a term stands for, or null when the hub cannot evaluate it: the hub
// knows allow-lists of chefs, kitchens and drivers, nothing else (no negation, no
// comparisons on payload fields).
function allowList(a) {
  const one = (field, values) => {
    const key = SUB_KEYS[field];
    if (!key) return null;
    const vs = values.map((v) => (v.kind === "num" ? v.raw : v.kind === "str" ? String(v.v) : null));
    if (vs.some((v) => v === null)) return null;
    if (key === "drivers" && !vs.every((v) => DRIVERS.has(v))) return null;
    return { key, values: [...new Set(vs)] };
  };
  if (a.op === "cmp" && a.cmp === "==") return one(a.field, [a.value]);
  if (a.op === "in") return one(a.field, a.values);
  if (a.op === "or") {
    const parts = a.args.map(allowList);
    if (parts.some((p) => !p) || new Set(parts.map((p) => p.key)).size !== 1) return null;
    return { key: parts[0].key, values: [...new Set(parts.flatMap((p) => p.values))] };
  }
  return null;
}

/** Which part the hub can evaluate: ``{subscription, hub, page}`` where subscription has
 *  the hello's chefs / kitchens / drivers lists (absent = all), ``hub`` the terms it
 *  stands for and ``page`` the rest (an expression, or null). The page still evaluates
 *  the whole expression (a 0.5 hub ignores subscriptions); the split says what the hub
 *  saves the network. */
export function split(ast) {
  const subscription = {};
  const hub = [];
  const page = [];
  const terms = !ast ? [] : ast.op === "and" ? ast.args : [ast];
  for (const t of terms) {
    const allow = allowList(t);
    if (!allow) { page.push(t); continue; }
    const prev = subscription[allow.key];
    subscription[allow.key] = prev ? prev.filter((v) => allow.values.includes(v)) : allow.values;
    hub.push(t);
  }
  const join = (xs) => (!xs.length ? null : xs.length === 1 ? xs[0] : { op: "and", args: xs });
  return { subscription, hub: join(hub), page: join(page) };
}

/** The fields the language knows by name beyond the dumpling's own (for help text). */
export const PSEUDO_FIELDS = ["ip.addr", "ip.src", "ip.dst", "port", "time", "summary",
  "chef", "kitchen", "driver", "metadata.*", "payload.*"];
