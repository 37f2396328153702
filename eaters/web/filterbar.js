// The filter box's feedback: where an expression fails to parse (the bad part marked),
// which part of it the hub evaluates and which the page, and the filter kept in the URL
// (?filter=) so a link or a reload shows the same view. DOM only: the language is
// filter.js, applying it to the models is app.js.

import { $ } from "./util.js";
import { format } from "./filter.js";

/** Show ``err`` (a FilterError) under the box, or clear it when ``err`` is null. */
export function showFilterError(text, err) {
  const box = $("filter-error");
  const input = $("filter");
  if (!err) {
    box.hidden = true;
    box.replaceChildren();
    input.removeAttribute("aria-invalid");
    return;
  }
  input.setAttribute("aria-invalid", "true");
  box.hidden = false;
  box.dataset.start = String(err.start);
  box.dataset.end = String(err.end);
  // The expression with the bad part marked, then the message.
  const expr = document.createElement("code");
  const mark = document.createElement("mark");
  mark.textContent = text.slice(err.start, err.end) || " ";
  expr.append(text.slice(0, err.start), mark, text.slice(err.end));
  const msg = document.createElement("span");
  msg.className = "msg";
  msg.textContent = `${err.message} (at character ${err.start + 1})`;
  box.replaceChildren(expr, msg);
}

/** Under the box, the two shares of a parsed filter: the hub's and the page's. */
export function showWhere(ast, where) {
  const hubPart = where.hub ? format(where.hub) : "";
  const pagePart = where.page ? format(where.page) : "";
  const box = $("filter-where");
  box.dataset.hub = hubPart;
  box.dataset.page = pagePart;
  box.replaceChildren();
  if (ast) {
    const add = (label, text, cls) => {
      const s = document.createElement("span");
      s.className = cls;
      s.textContent = `${label}: ${text}`;
      box.appendChild(s);
    };
    add("hub", hubPart || "everything (nothing here it can evaluate)", "hub-part");
    add("page", pagePart || "nothing more", "page-part");
  }
}

/** The filter in the page's URL, without adding a history entry. */
export function filterInUrl(text) {
  const u = new URL(location.href);
  if (text.trim()) u.searchParams.set("filter", text); else u.searchParams.delete("filter");
  history.replaceState(null, "", u.pathname + u.search);
}
