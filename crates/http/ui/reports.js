// The management reports as sortable tables (Java's reports page): the report's JSON
// rows, every key a column, PV names linked to their details page.
"use strict";

const REPORTS = [
  ["getNeverConnectedPVs", "Never connected PVs"],
  ["getCurrentlyDisconnectedPVs", "Currently disconnected PVs"],
  ["getEventRateReport", "Event rate"],
  ["getStorageRateReport", "Storage rate"],
  ["getPVsByStorageConsumed", "Storage consumed"],
  ["getPVsByDroppedEventsTimestamp", "Dropped events (time stamps)"],
  ["getPVsByDroppedEventsBuffer", "Dropped events (buffer overflow)"],
  ["getPVsByDroppedEventsTypeChange", "Dropped events (type change)"],
  ["getSlowChangingPVsWithDroppedEvents", "Slow-changing PVs with dropped events"],
  ["getLostConnectionsReport", "Lost connections"],
  ["getSilentPVsReport", "Silent PVs"],
  ["getRecentlyAddedPVs", "Recently added"],
  ["getRecentlyModifiedPVs", "Recently modified"],
  ["getPausedPVsReport", "Paused PVs"],
  ["getTimeSpanReport", "Time span"],
  ["getArchivedWaveforms", "Archived waveforms"],
];

let shown = { keys: [], rows: [] };

/** The columns of a report that are epoch seconds (Java writes them so), shown as dates
 *  (the CSV export keeps the seconds). */
const EPOCH_KEYS = { getTimeSpanReport: ["creationTS", "lastEvent"] };

/** Epoch seconds (a number or its text) as the browser's local date and time; anything
 *  else ("Never", empty) as it is. */
function epochText(v) {
  const secs = AA.num(v);
  return Number.isFinite(secs) && secs > 0 ? new Date(secs * 1000).toLocaleString() : (v ?? "");
}

/** A report's answer as rows: a list of objects as it is; an object of objects (the time
 *  span report) as one row per key. */
function rowsOf(answer) {
  if (Array.isArray(answer)) return answer.map(r => (typeof r === "object" && r !== null ? r : { value: r }));
  if (answer && typeof answer === "object") {
    return Object.entries(answer).map(([k, v]) => Object.assign({ pvName: k }, typeof v === "object" ? v : { value: v }));
  }
  return [];
}

async function show() {
  const name = document.getElementById("report").value;
  const limit = document.getElementById("limit").value || "1000";
  history.replaceState(null, "", `?report=${AA.enc(name)}`);
  try {
    const rows = rowsOf(await AA.api(`/mgmt/bpl/${name}?limit=${AA.enc(limit)}`));
    const keys = [];
    for (const r of rows) for (const k of Object.keys(r)) if (!keys.includes(k)) keys.push(k);
    const columns = keys.map(k => k === "pvName"
      ? { key: k, label: "PV", render: r => AA.el("a", { href: `pv.html?pv=${AA.enc(r.pvName)}` }, r.pvName) }
      : EPOCH_KEYS[name] && EPOCH_KEYS[name].includes(k)
        ? { key: k, render: r => epochText(r[k]) }  // sorted by the seconds, shown as a date
        : { key: k, render: typeof rows[0][k] === "object" ? r => JSON.stringify(r[k]) : undefined });
    AA.table(document.getElementById("table"), columns, rows);
    shown = { keys, rows };
    AA.ready();
    document.getElementById("count").textContent = `${rows.length} row(s)`;
    AA.say("msg", rows.length ? "" : "This report is empty.");
  } catch (e) {
    AA.say("msg", e.message, "err");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  AA.nav("reports.html");
  const sel = document.getElementById("report");
  for (const [v, label] of REPORTS) sel.append(AA.el("option", { value: v }, label));
  const asked = new URLSearchParams(location.search).get("report");
  if (asked && REPORTS.some(([v]) => v === asked)) sel.value = asked;
  sel.onchange = show;
  document.getElementById("go").onclick = show;
  document.getElementById("csv").onclick = () =>
    AA.download(`${sel.value}.csv`, AA.toCsv(shown.keys, shown.rows.map(r =>
      Object.fromEntries(shown.keys.map(k => [k, typeof r[k] === "object" ? JSON.stringify(r[k]) : r[k]])))));
  show();
});
