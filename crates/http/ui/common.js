// Shared helpers of the archiver's pages: calling the HTTP API, building DOM, sortable
// tables, the navigation bar. Plain JavaScript (no framework, no build step).
"use strict";

const AA = {};

/** Where the page keeps the server's API key for this tab (sessionStorage). */
AA.KEY_ITEM = "archiver.apiKey";

/** GET (or POST `body`, JSON-encoded unless a string) `path`; the parsed JSON answer.
 *  An HTTP error throws an Error carrying the server's message. The API key entered in
 *  the navigation bar (shown after a 401: the server needs one) goes with every call as
 *  `X-Archiver-Key`. */
AA.api = async function (path, body) {
  const opts = { headers: {} };
  const key = sessionStorage.getItem(AA.KEY_ITEM);
  if (body !== undefined) {
    opts.method = "POST";
    if (typeof body === "string") {
      opts.body = body;
      opts.headers["Content-Type"] = "text/plain";
    } else {
      opts.body = JSON.stringify(body);
      opts.headers["Content-Type"] = "application/json";
    }
  }
  if (key) opts.headers["X-Archiver-Key"] = key;
  const resp = await fetch(path, opts);
  if (resp.status === 401) AA.askKey();
  const text = await resp.text();
  let json;
  try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
  if (!resp.ok) {
    const m = json && (json.message || json.error || json.validation) || text || resp.statusText;
    throw new Error(`${resp.status}: ${m}`);
  }
  return json;
};

/** Shows the API key field in the navigation bar (once): the key is kept for this tab
 *  and sent with the next calls. */
AA.askKey = function () {
  if (document.getElementById("aa-key")) return;
  const input = AA.el("input", { type: "password", placeholder: "API key", size: 16,
    value: sessionStorage.getItem(AA.KEY_ITEM) || "" });
  const save = () => {
    if (input.value) sessionStorage.setItem(AA.KEY_ITEM, input.value);
    else sessionStorage.removeItem(AA.KEY_ITEM);
    box.lastChild.textContent = input.value ? " saved; retry" : "";
  };
  const box = AA.el("span", { id: "aa-key", title: "This server needs its API key for this action" },
    input, AA.el("button", { onclick: save }, "Use key"), AA.el("span", {}));
  input.addEventListener("keydown", e => { if (e.key === "Enter") save(); });
  const bar = document.querySelector("header.nav") || document.body;
  bar.append(box);
};

/** `encodeURIComponent`, short. */
AA.enc = encodeURIComponent;

/** An element: `el("td", {class: "num"}, "12")`; attributes starting with `on` are
 *  listeners; children are nodes or strings. */
AA.el = function (tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "checked" || k === "value") e[k] = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
};

/** Marks the moment the page first shows its data (`performance` mark `aa-ready`): the
 *  page's load time as a user sees it, read by the browser tests. */
AA.ready = function () {
  if (!performance.getEntriesByName("aa-ready").length) performance.mark("aa-ready");
};

/** Shows `text` in the message area `id` (kind "err" or "info"); empty text hides it. */
AA.say = function (id, text, kind) {
  const box = document.getElementById(id);
  if (!box) return;
  box.textContent = text || "";
  box.className = text ? `msg ${kind || "info"}` : "";
};

/** The navigation bar, with the current page marked. */
AA.nav = function (here) {
  const links = [["index.html", "PVs"], ["reports.html", "Reports"], ["viewer.html", "Viewer"]];
  const bar = AA.el("header", { class: "nav" }, AA.el("span", { class: "brand" }, "EPICS archiver"),
    links.map(([href, label]) => AA.el("a", { href, class: href === here ? "here" : null }, label)));
  document.body.prepend(bar);
};

/** A number for sorting and alignment, or NaN: "12.5", "1,024" (not dates). */
AA.num = function (v) {
  if (typeof v === "number") return v;
  if (typeof v !== "string" || !/^\s*-?[\d,]*\.?\d+(e[-+]?\d+)?\s*$/i.test(v)) return NaN;
  return Number(v.replace(/,/g, ""));
};

/** A sortable table in `container`: `columns` [{key, label, render(row)->Node|string,
 *  sortValue(row)}], `rows` objects. A click on a header sorts by it (numbers as numbers,
 *  `sortValue` when the column has one), again reverses. `opts.sortKey`/`opts.sortDir`
 *  give the order to start with, `opts.onSort(key, dir)` hears a change (so a refresh
 *  keeps it). Returns the table; `table.rows_` are the rows in the shown order. */
AA.table = function (container, columns, rows, opts) {
  opts = opts || {};
  let sortKey = opts.sortKey || null, dir = opts.sortDir || 1;
  const table = AA.el("table", { class: "data" });
  const thead = AA.el("thead"), tbody = AA.el("tbody");
  table.append(thead, tbody);
  function value(row, key) {
    const c = columns.find(c => c.key === key);
    const v = c && c.sortValue ? c.sortValue(row) : row[key];
    return v === undefined || v === null ? "" : v;
  }
  function draw() {
    const shown = rows.slice();
    if (sortKey) {
      shown.sort((a, b) => {
        const x = value(a, sortKey), y = value(b, sortKey);
        const nx = AA.num(x), ny = AA.num(y);
        if (!isNaN(nx) && !isNaN(ny)) return (nx - ny) * dir;
        return String(x).localeCompare(String(y)) * dir;
      });
    }
    thead.replaceChildren(AA.el("tr", {}, columns.map(c => {
      const th = AA.el("th", { "data-key": c.key, onclick: () => {
        if (c.key === sortKey) dir = -dir; else { sortKey = c.key; dir = 1; }
        if (opts.onSort) opts.onSort(sortKey, dir);
        draw();
      } }, c.label === undefined ? c.key : c.label);
      if (c.key === sortKey) th.className = dir > 0 ? "sorted-asc" : "sorted-desc";
      return th;
    })));
    tbody.replaceChildren(...shown.map(r => AA.el("tr", {}, columns.map(c => {
      const v = c.render ? c.render(r) : (r[c.key] === undefined || r[c.key] === null ? "" : r[c.key]);
      return AA.el("td", { class: !c.render && !isNaN(AA.num(v)) ? "num" : null }, v);
    }))));
    table.rows_ = shown;
  }
  draw();
  container.replaceChildren(table);
  return table;
};

/** `rows` (objects) as CSV text with `keys` as the header; values quoted as RFC 4180. */
AA.toCsv = function (keys, rows) {
  const q = v => {
    const s = v === undefined || v === null ? "" : String(v);
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [keys.join(","), ...rows.map(r => keys.map(k => q(r[k])).join(","))].join("\n") + "\n";
};

/** Parses CSV text (RFC 4180: quotes, doubled quotes, CRLF) into arrays of fields, split
 *  at `delim` ("," unless given, ";" for a European spreadsheet's export). Each row has
 *  `line`: the line of the text it starts on (1-based), for messages naming a row. */
AA.parseCsv = function (text, delim) {
  delim = delim || ",";
  const out = [];
  let row = [], field = "", quoted = false, line = 1, start = 1;
  const end = () => { row.push(field); row.line = start; out.push(row); row = []; field = ""; start = line; };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else { if (c === "\n") line++; field += c; }
    } else if (c === '"') quoted = true;
    else if (c === delim) { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      line++;
      end();
    } else field += c;
  }
  if (field !== "" || row.length) end();
  return out.filter(r => r.some(f => f.trim() !== ""));
};

/** Offers `text` as a file download named `name`. */
AA.download = function (name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type: type || "text/csv" }));
  const a = AA.el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
};

/** A Java status time ("Nov 30 2026 04:40:01.123 UTC", "Never") shown as it is; an ISO
 *  or epoch time in the browser's local form. */
AA.time = function (v) {
  if (typeof v === "number") return new Date(v).toLocaleString();
  return v || "";
};

/** A Java status time ("Nov 30 2026 04:40:01.123 UTC") as epoch ms, for sorting by
 *  time; "Never" or empty is -Infinity (before every time), any other text NaN. */
AA.javaTimeMs = function (v) {
  const m = /^(\w{3}) (\d{1,2}) (\d{4}) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,3}))?/.exec(v || "");
  if (!m) return !v || v === "Never" ? -Infinity : NaN;
  const mon = "JanFebMarAprMayJunJulAugSepOctNovDec".indexOf(m[1]) / 3;
  return Date.UTC(+m[3], mon, +m[2], +m[4], +m[5], +m[6], Number((m[7] || "0").padEnd(3, "0")));
};

/** The class for a PV status ("Being archived" good, paused warn, else bad). */
AA.statusClass = function (s) {
  if (s === "Being archived") return "st-ok";
  if (/paused|Initial|request|pending/i.test(s || "")) return "st-warn";
  return "st-bad";
};
