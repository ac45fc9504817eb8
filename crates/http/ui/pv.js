// One PV: getPVDetails (engine and catalogue figures), getPVTypeInfo (type, archive
// fields, stores), getStoresForPV, and the lifecycle actions.
"use strict";

const pv = new URLSearchParams(location.search).get("pv") || "";
let current = {};  // the PV's getPVStatus object (its sampling period and method)

function kvTable(container, pairs) {
  container.replaceChildren(AA.el("table", { class: "data kv" },
    AA.el("tbody", {}, pairs.map(([k, v]) => AA.el("tr", {}, AA.el("td", {}, k), AA.el("td", {}, v))))));
}

async function load() {
  document.getElementById("pvname").textContent = pv;
  document.getElementById("plot-link").href = `viewer.html?pv=${AA.enc(pv)}`;
  if (!pv) { AA.say("msg", "No PV given: open this page as pv.html?pv=NAME.", "err"); return; }
  try {
    const status = current = (await AA.api(`/mgmt/bpl/getPVStatus?pv=${AA.enc(pv)}`))[0] || {};
    const s = document.getElementById("pvstatus");
    s.textContent = status.status || "";
    s.className = `status ${AA.statusClass(status.status)}`;
    // PV.FIELD (an archive field of PV) or an alias answers its PV's status: say whose,
    // with a link; a field has no details of its own (its samples are in PV's data).
    const main = status.pvNameOnly;
    if (main && main !== pv) {
      const field = pv.startsWith(`${main}.`);
      document.getElementById("owner").replaceChildren(
        field ? `${pv} is the archive field ${pv.slice(main.length + 1)} of ` : `${pv} is an alias of `,
        AA.el("a", { href: `pv.html?pv=${AA.enc(main)}`, id: "owner-link" }, main),
        field ? " (archived with it: its details are that PV's)." : ".");
      if (field) { AA.ready(); return; }
    }
  } catch (e) { AA.say("msg", e.message, "err"); }
  try {
    const details = await AA.api(`/mgmt/bpl/getPVDetails?pv=${AA.enc(pv)}`);
    AA.table(document.getElementById("details"),
      [{ key: "name", label: "Name" }, { key: "value", label: "Value" }, { key: "source", label: "Source" }], details);
    AA.ready();
  } catch (e) { document.getElementById("details").textContent = e.message; }
  try {
    const info = await AA.api(`/mgmt/bpl/getPVTypeInfo?pv=${AA.enc(pv)}`);
    kvTable(document.getElementById("typeinfo"), Object.entries(info).map(([k, v]) =>
      [k, typeof v === "object" && v !== null ? (Array.isArray(v) ? v.join("\n") : JSON.stringify(v, null, 1)) : String(v)]));
  } catch (e) { document.getElementById("typeinfo").textContent = e.message; }
  try {
    const [stores, consumed] = await Promise.all([
      AA.api(`/mgmt/bpl/getStoresForPV?pv=${AA.enc(pv)}`),
      AA.api("/mgmt/bpl/getPVsByStorageConsumed?limit=-1").catch(() => []),
    ]);
    const mine = (consumed || []).find(r => r.pvName === pv);
    kvTable(document.getElementById("stores"), [...Object.entries(stores || {}),
      ["Disk use (every store)", bytesText(mine ? Number(mine.storageConsumed) : 0)]]);
  } catch (e) { document.getElementById("stores").textContent = e.message; }
}

/** A size in bytes as "512 B", "12.3 KB", "4.56 MB", "1.20 GB" (1024 based). */
function bytesText(n) {
  if (!Number.isFinite(n)) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i ? `${n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : 2)} ${units[i]}` : `${n} B`;
}

async function act(path) {
  try {
    const a = await AA.api(path);
    const v = Array.isArray(a) ? a[0] : a;
    AA.say("msg", v && v.validation ? v.validation : (v && (v.status || v.desc)) || "done", v && v.validation ? "err" : "info");
  } catch (e) { AA.say("msg", e.message, "err"); }
  load();
}

document.addEventListener("DOMContentLoaded", () => {
  AA.nav("");
  const q = AA.enc(pv);
  document.getElementById("pause").onclick = () => act(`/mgmt/bpl/pauseArchivingPV?pv=${q}`);
  document.getElementById("resume").onclick = () => act(`/mgmt/bpl/resumeArchivingPV?pv=${q}`);
  document.getElementById("period").onclick = () => {
    const p = prompt("New sampling period (s):", current.samplingPeriod || "1.0");
    const m = p === null ? null : prompt("Sampling method (MONITOR or SCAN):", current.samplingMethod || "MONITOR");
    if (m !== null) act(`/mgmt/bpl/changeArchivalParameters?pv=${q}&samplingperiod=${AA.enc(p)}&samplingmethod=${AA.enc(m)}`);
  };
  document.getElementById("delete").onclick = () => {
    if (!confirm(`Stop archiving ${pv}? It must be paused first.`)) return;
    const data = confirm("Delete its data files too? (Cancel keeps the data.)");
    act(`/mgmt/bpl/deletePV?pv=${q}&deleteData=${data}`);
  };
  load();
});
