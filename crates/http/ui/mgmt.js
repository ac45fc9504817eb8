// The management page: appliance overview, add PVs, search, status table and actions on a
// selection, export/import of the PV list as CSV. Uses /mgmt/bpl/* only.
"use strict";

const M = { rows: [], selected: new Set(), rates: {} };

async function overview() {
  try {
    const [metrics, versions, stores] = await Promise.all([
      AA.api("/mgmt/bpl/getApplianceMetrics"),
      AA.api("/mgmt/bpl/getVersions"),
      AA.api("/mgmt/bpl/getStorageMetricsForAppliance").catch(() => []),
    ]);
    const m = Array.isArray(metrics) ? metrics[0] || {} : metrics;
    document.getElementById("instance").textContent = m.instance || "";
    const tiles = [
      ["PVs", m.pvCount], ["Connected", m.connectedPVCount], ["Disconnected", m.disconnectedPVCount],
      ["Never connected", m.neverConnectedPVCount], ["Paused", m.pausedPVCount],
      ["Events/s", m.eventRate], ["Bytes/s", m.dataRate], ["GB/day", m.dataRateGBPerDay],
      ["Status", m.status], ["Up", uptime(AA.num(m.uptimeSeconds))],
      ["Version", (versions.mgmt_version || "").replace("Archiver Appliance Version ", "")],
    ];
    // Storage per store: the GB its files use, and what is free on its file system.
    for (const s of stores || []) {
      const free = s.available_space === undefined ? "" : ` (${s.available_space} GB free)`;
      tiles.push([`${s.name} GB${free}`, s.used_space]);
    }
    document.getElementById("overview").replaceChildren(...tiles.map(([k, v]) =>
      AA.el("div", { class: "tile", "data-metric": k }, AA.el("div", { class: "v" }, v === undefined ? "–" : v),
        AA.el("div", { class: "k" }, k))));
    AA.say("overview-msg", "");
  } catch (e) {
    AA.say("overview-msg", `Cannot read the appliance's metrics: ${e.message}`, "err");
  }
}

/** Seconds as "3 d 4 h", "2 h 5 min", "42 s". */
function uptime(secs) {
  if (!Number.isFinite(secs)) return undefined;
  const d = Math.floor(secs / 86400), h = Math.floor(secs % 86400 / 3600), m = Math.floor(secs % 3600 / 60);
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  return m ? `${m} min` : `${Math.floor(secs)} s`;
}

async function policies() {
  try {
    const list = await AA.api("/mgmt/bpl/getPolicyList");
    const sel = document.getElementById("add-policy");
    for (const [name, desc] of Object.entries(list || {})) sel.append(AA.el("option", { value: name, title: desc }, name));
  } catch (e) { /* the policy list is optional: site rules apply */ }
}

/** What to archive from the text box: `{entries, refused}`. Names (one a line, or
 *  separated by commas or spaces), or CSV rows with their own method and period when the
 *  first line is a header with `pv` (`,` or `;` separated: a `;` in the header makes `;`
 *  the delimiter). Lines starting with `#` and blank lines are skipped; a row that cannot
 *  be read (no PV field, a name with spaces) is refused: `{line, text, reason}`. */
function entriesFromText(text) {
  const method = document.getElementById("add-method").value;
  const period = document.getElementById("add-period").value.trim();
  const policy = document.getElementById("add-policy").value;
  const common = {};
  if (method) common.samplingmethod = method;
  if (period) common.samplingperiod = period;
  if (policy) common.policy = policy;
  const comment = l => l.trim().startsWith("#");
  const first = text.split(/\r?\n/).find(l => l.trim() && !comment(l)) || "";
  const delim = first.includes(";") ? ";" : ",";
  const rows = AA.parseCsv(text.trim() + "\n", delim).filter(r => !comment(r[0]));
  const head = rows.length ? rows[0].map(h => h.trim().toLowerCase()) : [];
  const entries = [], refused = [];
  if (head.includes("pv")) {
    const col = k => head.indexOf(k);
    for (const r of rows.slice(1)) {
      const pv = (r[col("pv")] || "").trim();
      const bad = reason => refused.push({ line: r.line, text: r.join(delim), reason });
      if (!pv) { bad(`no pv field (${r.length} field(s), the header has ${head.length}: ${head.join(delim)})`); continue; }
      if (/\s/.test(pv)) { bad(`the PV name ${JSON.stringify(pv)} has a space`); continue; }
      const e = Object.assign({}, common, { pv });
      for (const k of ["samplingmethod", "samplingperiod", "policy"]) {
        const i = col(k);
        if (i >= 0 && r[i] && r[i].trim()) e[k] = r[i].trim();
      }
      entries.push(e);
    }
    return { entries, refused };
  }
  const names = text.split(/\r?\n/).filter(l => !comment(l)).join("\n");
  for (const pv of names.split(/[\s,]+/).filter(Boolean)) entries.push(Object.assign({ pv }, common));
  return { entries, refused };
}

/** Archives `entries` in one request; when the server refuses the whole list (a 400 for
 *  one bad name), one request a PV, so the good ones are archived and each refusal
 *  listed with its reason. The answers, one a PV. */
async function archiveEach(entries) {
  try {
    const answer = await AA.api("/mgmt/bpl/archivePV", entries);
    return Array.isArray(answer) ? answer : [answer];
  } catch (e) {
    if (!e.message.startsWith("400") || entries.length < 2) throw e;
  }
  const out = [];
  for (const e of entries) {
    try {
      const a = await AA.api("/mgmt/bpl/archivePV", [e]);
      out.push(...(Array.isArray(a) ? a : [a]));
    } catch (err) {
      out.push({ pvName: e.pv, status: "Refused", validation: err.message });
    }
  }
  return out;
}

async function addPvs() {
  let read;
  try {
    read = entriesFromText(document.getElementById("add-names").value);
  } catch (e) {
    AA.say("add-msg", `Cannot read the list: ${e.message}`, "err");
    return;
  }
  const { entries, refused } = read;
  const refusedRows = refused.map(r => ({ pvName: `line ${r.line}: ${r.text}`, status: "Refused", validation: r.reason }));
  const columns = [{ key: "pvName", label: "PV" }, { key: "status", label: "Status" }, { key: "validation", label: "Message" }];
  if (!entries.length) {
    AA.table(document.getElementById("add-result"), columns, refusedRows);
    AA.say("add-msg", refused.length ? `No PV to archive: ${refused.length} row(s) refused (listed below).`
      : "Give at least one PV name.", "err");
    return;
  }
  AA.say("add-msg", `Submitting ${entries.length} PV(s)…`);
  try {
    const rows = await archiveEach(entries);
    const all = refusedRows.concat(rows);
    AA.table(document.getElementById("add-result"), columns, all);
    const bad = all.filter(r => r.status === "Refused").length;
    AA.say("add-msg", bad ? `${rows.length - bad + refused.length} answer(s); ${bad} row(s) refused (listed below).`
      : `${rows.length} answer(s).`, bad ? "err" : "info");
    if (!document.getElementById("search").value) {
      document.getElementById("search").value = entries.length === 1 ? entries[0].pv : "*";
    }
    await search(true);
  } catch (e) {
    AA.say("add-msg", e.message, "err");
  }
}

/** Searches and shows the status table; `keepMessage` leaves the message of an action. */
async function search(keepMessage) {
  const q = document.getElementById("search").value.trim() || "*";
  const regex = document.getElementById("search-regex").checked;
  const limit = Number(document.getElementById("search-limit").value) || 500;
  try {
    let status;
    if (!regex && !/[*?]/.test(q)) {
      // One name: its status even when it is not archived (Java's answer says so).
      status = await AA.api(`/mgmt/bpl/getPVStatus?pv=${AA.enc(q)}`);
    } else if (!regex) {
      // A glob: getPVStatus's, cut at the limit, which also lists the PVs still waiting
      // to connect (getAllPVs, as Java's, leaves them out).
      status = await AA.api(`/mgmt/bpl/getPVStatus?pv=${AA.enc(q)}&limit=${limit}`);
    } else {
      // A regular expression: the archived names, then the PVs that never connected
      // matching it (getAllPVs leaves them out), then the status of those. The server
      // matches both: the browser's RegExp has another syntax and no bound on its cost.
      const names = await AA.api(`/mgmt/bpl/getAllPVs?regex=${AA.enc(q)}&limit=${limit}`);
      const pending = await AA.api(`/mgmt/bpl/getNeverConnectedPVs?regex=${AA.enc(q)}`).catch(() => []);
      const listed = new Set(names);
      for (const p of pending || []) {
        if (names.length >= limit) break;
        if (!listed.has(p.pvName)) { listed.add(p.pvName); names.push(p.pvName); }
      }
      status = names.length ? await AA.api("/mgmt/bpl/getPVStatus", names.slice(0, limit)) : [];
    }
    status = (status || []).filter(s => s.status !== "Not being archived" || !/[*?]/.test(q)).slice(0, limit);
    const now = Date.now();
    // The engine's event rate (the event rate report, as Java's status page); between two
    // refreshes, the rate measured here.
    const report = {};
    if (status.some(s => !M.rates[s.pvName])) {
      for (const r of await AA.api("/mgmt/bpl/getEventRateReport").catch(() => [])) report[r.pvName] = r.eventRate;
    }
    for (const s of status) {
      const prev = M.rates[s.pvName];
      const n = Number(s.eventsReceived || 0);
      // A counter that went down was reset (a change of period recreates the channel):
      // no rate from the two counts then, the engine's report or nothing.
      if (prev && now > prev.t && n >= prev.n) s.eventRate = ((n - prev.n) * 1000 / (now - prev.t)).toFixed(2);
      else if (report[s.pvName] !== undefined) s.eventRate = Number(report[s.pvName]).toFixed(2);
      M.rates[s.pvName] = { n, t: now };
      s.drops = ["droppedEventsTimestamp", "droppedEventsBuffer", "droppedEventsTypeChange",
        "droppedEventsNoType", "droppedEventsClient", "droppedEventsRateLimit"]
        .reduce((a, k) => a + Number(s[k] || 0), 0);
    }
    M.rows = status;
    const names = new Set(status.map(s => s.pvName));
    for (const n of [...M.selected]) if (!names.has(n)) M.selected.delete(n);
    drawTable();
    AA.ready();
    if (!status.length && keepMessage !== true) AA.say("pv-msg", `No PV matches ${q}.`, "info");
    else if (keepMessage !== true) AA.say("pv-msg", "");
  } catch (e) {
    AA.say("pv-msg", e.message, "err");
  }
}

function drawTable() {
  const all = AA.el("input", { type: "checkbox", title: "select all", onclick: ev => {
    for (const r of M.rows) ev.target.checked ? M.selected.add(r.pvName) : M.selected.delete(r.pvName);
    drawTable();
  } });
  all.checked = M.rows.length > 0 && M.rows.every(r => M.selected.has(r.pvName));
  const columns = [
    { key: "", label: all, render: r => AA.el("input", { type: "checkbox", class: "sel", "data-pv": r.pvName,
      checked: M.selected.has(r.pvName), onclick: ev => {
        ev.target.checked ? M.selected.add(r.pvName) : M.selected.delete(r.pvName);
        updateCount();
      } }) },
    { key: "pvName", label: "PV", render: r => AA.el("a", { href: `pv.html?pv=${AA.enc(r.pvName)}` }, r.pvName) },
    { key: "status", label: "Status", render: r => AA.el("span", { class: `status ${AA.statusClass(r.status)}`,
      "data-pv": r.pvName }, r.status) },
    { key: "connectionState", label: "Connected" },
    { key: "lastEvent", label: "Last event", sortValue: r => AA.javaTimeMs(r.lastEvent) },
    { key: "eventRate", label: "Events/s" },
    { key: "eventsReceived", label: "Received" },
    { key: "drops", label: "Dropped" },
    { key: "samplingMethod", label: "Method" },
    { key: "samplingPeriod", label: "Period (s)" },
    { key: "dbrType", label: "Type" },
  ];
  // The header cell of the first column is the "select all" box, not a label to sort by.
  const t = AA.table(document.getElementById("pv-table"), columns, M.rows, { sortKey: M.sortKey, sortDir: M.sortDir,
    onSort: (key, dir) => { M.sortKey = key; M.sortDir = dir; } });
  t.querySelector("th").onclick = null;
  updateCount();
}

function updateCount() {
  const n = M.selected.size;
  document.getElementById("sel-count").textContent = `${n} selected`;
  for (const id of ["act-pause", "act-resume", "act-abort", "act-period", "act-view", "act-delete"]) {
    document.getElementById(id).disabled = n === 0;
  }
}

async function act(what) {
  const names = [...M.selected];
  if (!names.length) return;
  try {
    let answer;
    if (what === "pause") answer = await AA.api("/mgmt/bpl/pauseArchivingPV", names);
    else if (what === "resume") answer = await AA.api("/mgmt/bpl/resumeArchivingPV", names);
    else if (what === "abort") {
      // The PVs still waiting to connect: their archive requests are withdrawn (they
      // cannot be paused, so not deleted either).
      if (!confirm(`Abort the archive requests of ${names.length} PV(s) that never connected?`)) return;
      answer = await AA.api("/mgmt/bpl/abortArchivingPV", names);
      answer = (Array.isArray(answer) ? answer : [Object.assign({ pvName: names[0] }, answer)]).map(a =>
        a.status === "no" ? { pvName: a.pvName, validation: "not waiting to connect: nothing to abort (pause, then delete it)" } : a);
    } else if (what === "period") {
      const current = (M.rows.find(r => r.pvName === names[0]) || {});
      const p = prompt(`New sampling period in seconds for ${names.length} PV(s):`, current.samplingPeriod || "1.0");
      if (p === null) return;
      const m = prompt("Sampling method (MONITOR or SCAN):", current.samplingMethod || "MONITOR");
      if (m === null) return;
      answer = [];
      const changed = [];
      for (const pv of names) {
        try {
          const a = await AA.api(`/mgmt/bpl/changeArchivalParameters?pv=${AA.enc(pv)}&samplingperiod=${AA.enc(p)}&samplingmethod=${AA.enc(m)}`);
          if (a && a.validation) answer.push({ pvName: pv, validation: a.validation });
          else changed.push(pv);
        } catch (e) {
          answer.push({ pvName: pv, validation: e.message });
        }
      }
      if (answer.length) answer.push({ validation: `Changed: ${changed.length ? changed.join(", ") : "none"}.` });
    } else if (what === "delete") {
      if (!confirm(`Stop archiving ${names.length} PV(s)? They must be paused first.`)) return;
      const data = confirm("Delete their data files too? (Cancel keeps the data.)");
      answer = [];
      for (const pv of names) {
        answer.push(await AA.api(`/mgmt/bpl/deletePV?pv=${AA.enc(pv)}&deleteData=${data}`));
      }
    }
    const list = Array.isArray(answer) ? answer : [answer];
    const problems = list.filter(a => a && a.validation).map(a => `${a.pvName || ""} ${a.validation}`);
    AA.say("pv-msg", problems.length ? problems.join("\n") : `${what}: done for ${names.length} PV(s).`,
      problems.length ? "err" : "info");
  } catch (e) {
    AA.say("pv-msg", e.message, "err");
  }
  overview();
  await search(true);
}

/** Every archived PV (not only the shown ones) with its sampling parameters, as the CSV
 *  that "Add PVs" imports: `pv,samplingmethod,samplingperiod,status`. */
async function pvListCsv() {
  const all = await AA.api("/mgmt/bpl/getPVStatus?pv=*&limit=-1");
  const rows = (all || []).filter(s => s.status !== "Not being archived").map(s => ({
    pv: s.pvName, samplingmethod: s.samplingMethod, samplingperiod: s.samplingPeriod, status: s.status,
  }));
  return { rows: rows.length, text: AA.toCsv(["pv", "samplingmethod", "samplingperiod", "status"], rows) };
}

async function exportCsv() {
  try {
    const csv = await pvListCsv();
    AA.download("archived-pvs.csv", csv.text);
    AA.say("pv-msg", `Exported ${csv.rows} PV(s).`);
  } catch (e) {
    AA.say("pv-msg", e.message, "err");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  AA.nav("index.html");
  const params = new URLSearchParams(location.search);
  document.getElementById("search").value = params.get("search") || "*";
  document.getElementById("add-go").onclick = addPvs;
  document.getElementById("search-go").onclick = () => search();
  document.getElementById("search").addEventListener("keydown", e => { if (e.key === "Enter") search(); });
  document.getElementById("act-pause").onclick = () => act("pause");
  document.getElementById("act-resume").onclick = () => act("resume");
  document.getElementById("act-abort").onclick = () => act("abort");
  document.getElementById("act-period").onclick = () => act("period");
  document.getElementById("act-delete").onclick = () => act("delete");
  document.getElementById("act-view").onclick = () => {
    location.href = "viewer.html?" + [...M.selected].map(p => `pv=${AA.enc(p)}`).join("&");
  };
  document.getElementById("export").onclick = exportCsv;
  document.getElementById("add-file").onchange = async ev => {
    const f = ev.target.files[0];
    if (f) document.getElementById("add-names").value = await f.text();
  };
  let timer = null;
  document.getElementById("auto-refresh").onchange = ev => {
    clearInterval(timer);
    if (ev.target.checked) timer = setInterval(() => { search(); overview(); }, 5000);
  };
  overview();
  policies();
  search();
});
