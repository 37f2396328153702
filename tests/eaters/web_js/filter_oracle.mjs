// For tests/eaters/test_web_filter.py: one JSON request per line on stdin, one answer per line.
// {"text": "...", "items": [dumpling, ...]} -> {"ok": true, "canon": "...", "again": "...",
// "results": [bool, ...], "subscription": {...}} or {"ok": false, "error": "...",
// "start": n, "end": n, "kind": "FilterError"}.
import { createInterface } from "node:readline";
import { parse, compile, format, split, FilterError } from "../../../eaters/web/filter.js";

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const req = JSON.parse(line);
  let out;
  try {
    const ast = parse(req.text);
    const canon = format(ast);
    const again = format(parse(canon));
    const pred = compile(ast);
    const results = (req.items || []).map((d) => pred({ d, kitchen: d.metadata.kitchen ?? "hub" }));
    // The page's evaluation must agree with "hub share and page share" evaluated apart.
    const parts = split(ast);
    const hubPred = compile(parts.hub), pagePred = compile(parts.page);
    const splitResults = (req.items || []).map((d) => hubPred({ d }) && pagePred({ d }));
    out = { ok: true, canon, again, results, splitResults, subscription: parts.subscription };
  } catch (err) {
    out = { ok: false, error: String(err.message), start: err.start ?? null, end: err.end ?? null,
      kind: err instanceof FilterError ? "FilterError" : err.constructor.name };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
});
