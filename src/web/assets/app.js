// Review page: login, live view, review queue, part detail. Plain JS over the JSON API (docs/API.md).
// Everything from the server is put into the page with textContent / attributes, never as HTML.
"use strict";

let me = null;          // { user: {name, role, csrf_token}, defect_classes, ... }
let live = null;        // this tab's share of the live stream: { source: its EventSource when it leads }
let keyHandler = null;  // the current view's keyboard handler

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v;  // CSSOM: allowed by the page's Content-Security-Policy
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

async function api(path, opts = {}) {
  const headers = { "Accept": "application/json" };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  if (opts.method && opts.method !== "GET" && me) headers["X-CSRF-Token"] = me.user.csrf_token;
  const res = await fetch(path, {
    method: opts.method || "GET", headers, credentials: "same-origin",
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  if (res.status === 401 && !opts.noRedirect) { location.href = "/login"; throw new Error("not logged in"); }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 2500);
}

const fmtTime = us => new Date(us / 1000).toLocaleString();
const fmtNum = (v, d = 1) => (v === null || v === undefined) ? "–" : Number(v).toFixed(d);
const imageUrl = p => "/api/images/" + p.split("/").map(encodeURIComponent).join("/");
// A score against its threshold: a bar (the mark is the threshold) and the figures.
function scoreBar(what, score, thr) {
  const scale = Math.max(score, thr) * 1.25 || 1;
  return h("div", { class: "score " + what },
    h("div", { class: "bar" }, h("i", { style: `width:${Math.min(100, Math.max(0, 100 * score / scale))}%` }),
      h("em", { style: `left:${Math.max(0, 100 * thr / scale)}%` })),
    h("p", {}, what + " score ", h("b", {}, fmtNum(score, 4)), " · threshold ", fmtNum(thr, 4),
      score > thr ? h("b", { class: "over" }, " over") : ""));
}

// The score that explains the verdict: the sound's when the part was rejected for its sound.
function scoreText(p) {
  if (reasonCodes(p).includes("acoustic_score_over_threshold") && p.acoustic_score !== undefined && p.acoustic_score !== null)
    return "sound " + fmtNum(p.acoustic_score, 3) + " / " + fmtNum(p.acoustic_threshold, 3);
  return fmtNum(p.score, 3) + " / " + fmtNum(p.threshold, 3);
}

const reasonCodes = p => (Array.isArray(p.reasons) ? p.reasons : []).map(r => r.code);

function verdictBadge(p) {
  if (p.uncertain) return h("span", { class: "verdict unsure" }, "UNCERTAIN");
  return h("span", { class: "verdict " + p.verdict }, p.verdict);
}

function reviewText(r) {
  if (!r) return "not reviewed";
  return (r.label === "good" ? "good" : "defect: " + r.defect_class) + " (" + r.user + ")";
}

// ---------------------------------------------------------------------------------------------------------------
// Login page

async function loginPage() {
  const form = document.getElementById("login-form");
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const err = document.getElementById("login-error");
    err.textContent = "";
    try {
      await api("/api/auth/login", {
        method: "POST", noRedirect: true,
        body: { name: form.name.value, password: form.password.value },
      });
      location.href = "/#/queue";
    } catch (e) {
      err.textContent = e.message === "log in first" ? "Wrong user name or password" : e.message;
    }
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Live figures and alerts (every page)

function showStats(s) {
  const alerts = document.getElementById("alerts");
  alerts.replaceChildren(...s.alerts.map(a => h("div", { class: a.startsWith("line not running") ? "info" : "" }, a)));
  document.getElementById("awaiting").textContent = s.awaiting_review || "";
  const tiles = document.getElementById("tiles");
  if (!tiles) return;
  const model = s.line.model ? `${s.line.model.name} v${s.line.model.version}` : (s.last_model || "–");
  const tile = (v, label) => h("div", { class: "tile" }, h("b", {}, v), h("span", {}, label));
  tiles.replaceChildren(
    tile(s.parts, "parts (run " + (s.run_id ?? "–") + ")"),
    tile(s.passed, "pass"),
    tile(s.rejected, "reject"),
    tile(s.yield_pct === null ? "–" : fmtNum(s.yield_pct) + " %", "yield"),
    tile(s.parts_per_min, "parts / min"),
    tile(fmtNum(s.latency_p50_ms) + " ms", "latency p50"),
    tile(fmtNum(s.latency_p99_ms) + " ms", "latency p99"),
    tile(s.plc, "PLC link"),
    tile(s.line.running ? "running" : "stopped", "model " + model +
      (s.line.model ? " · threshold " + s.line.model.threshold : "")),
    ...(s.line.counters ? [
      tile(fmtNum(s.line.counters.images_mb) + " MB", "images on disk"),
      tile(s.line.counters.records_waiting, "records waiting"),
      ...(s.line.counters.images_skipped ? [tile(s.line.counters.images_skipped, "images skipped (queue full)")] : []),
    ] : []),
  );
}

// One live stream per browser, not per tab: over HTTP/1.1 a browser opens at most 6 connections to a host, so a
// stream per tab locked the 6th tab. The leading tab holds /api/live and passes every event to the other tabs
// over a BroadcastChannel; it says so every second, a tab that hears no leader for 3 s takes over, and of two
// leaders the one with the smaller id stays.
const TAB_ID = Date.now() + Math.random();
let lastStats = Date.now();

function onLive(type, data) {
  if (type === "stats") {
    lastStats = Date.now();
    document.getElementById("lost")?.remove();
    document.body.dataset.liveAt = String(lastStats);
    showStats(JSON.parse(data));
  } else if (type === "part") {
    const thumbs = document.getElementById("thumbs");
    if (!thumbs) return;
    thumbs.prepend(thumb(JSON.parse(data)));
    while (thumbs.children.length > 48) thumbs.lastChild.remove();
  } else if (type === "session_ended") {
    // Logout elsewhere or an expired session: back to the login page.
    live?.source?.close();
    location.href = "/login";
  }
}

function startLive() {
  if (live) return;
  live = { source: null };
  const channel = "BroadcastChannel" in window ? new BroadcastChannel("station-live") : null;
  const lead = () => {
    if (live.source) return;
    live.source = new EventSource("/api/live");
    for (const type of ["stats", "part", "plc", "lagged", "session_ended"]) {
      live.source.addEventListener(type, ev => {
        onLive(type, ev.data);
        channel?.postMessage({ type, data: ev.data });
      });
    }
    channel?.postMessage({ type: "leader", from: TAB_ID });
  };
  const follow = () => { live.source?.close(); live.source = null; };
  if (!channel) lead();
  else {
    let leaderSeen = Date.now() - 2500;
    channel.onmessage = ({ data: m }) => {
      if (m.type === "leader") {
        if (!live.source || m.from < TAB_ID) { leaderSeen = Date.now(); follow(); }
      } else if (m.type === "who") { if (live.source) channel.postMessage({ type: "leader", from: TAB_ID }); }
      else if (m.type === "gone") leaderSeen = 0;
      else onLive(m.type, m.data);
    };
    window.addEventListener("pagehide", () => { if (live.source) channel.postMessage({ type: "gone" }); });
    setInterval(() => {
      if (live.source) channel.postMessage({ type: "leader", from: TAB_ID });
      else if (Date.now() - leaderSeen > 3000) lead();
    }, 1000);
    // A leader answers a new tab at once; with no answer the new tab leads.
    channel.postMessage({ type: "who" });
    setTimeout(() => { if (!live.source && Date.now() - leaderSeen > 1200) lead(); }, 600);
  }
  // No stats for a while (the station stopped, the network dropped): say so instead of showing old figures.
  setInterval(() => {
    if (Date.now() - lastStats < 6000 || document.getElementById("lost")) return;
    document.getElementById("alerts").prepend(h("div", { id: "lost" },
      "connection lost: the station is not answering (stopped, or the network is down); figures below are old"));
  }, 1000);
}

// ---------------------------------------------------------------------------------------------------------------
// Views

function thumb(p) {
  const img = p.image_path ? h("img", { src: imageUrl(p.image_path), alt: p.part_id, loading: "lazy" })
    : h("span", { class: "noimg" }, "no image");
  return h("div", { class: "thumb " + p.verdict, onclick: () => { location.hash = "#/part/" + p.part_id; } },
    img, h("div", {}, h("span", {}, p.part_id), h("b", {}, p.verdict)),
    h("div", { class: "muted" }, h("span", {}, "score " + fmtNum(p.score, 3)), h("span", {}, reasonCodes(p)[0] || "")));
}

async function liveView(view) {
  view.replaceChildren(h("div", { id: "tiles", class: "tiles" }), h("h3", {}, "Latest parts"),
    h("div", { id: "thumbs", class: "thumbs" }));
  showStats(await api("/api/stats"));
  const page = await api("/api/parts?limit=24");
  document.getElementById("thumbs").replaceChildren(...page.parts.map(thumb));
}

const queueState = { filters: { queue: "true", reviewed: "false" }, parts: [], next: null, sel: 0 };

function queueQuery(before) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(queueState.filters)) if (v !== "" && v !== undefined) q.set(k, v);
  if (before) q.set("before", before);
  q.set("limit", "50");
  return "/api/parts?" + q;
}

async function queueView(view) {
  const models = await api("/api/models");
  const f = queueState.filters;
  const sel = (name, options) => h("select", { name },
    ...options.map(([v, label]) => h("option", { value: v, selected: (f[name] ?? "") === v }, label)));
  const toLocal = us => us ? new Date(us / 1000 - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 16) : "";
  const form = h("form", { class: "filters", id: "filters" },
    h("label", {}, "Show", sel("queue", [["true", "rejected + uncertain"], ["", "all parts"]])),
    h("label", {}, "Reviewed", sel("reviewed", [["false", "not yet"], ["true", "reviewed"], ["", "either"]])),
    h("label", {}, "Verdict", sel("verdict", [["", "any"], ["REJECT", "REJECT"], ["PASS", "PASS"]])),
    h("label", {}, "Reason", sel("reason", [["", "any"], ...["score_over_threshold", "frame_fault", "model_error",
      "deadline_missed", "pipeline_overloaded", "plc_undelivered", "verdict_late_at_gate",
      "acoustic_score_over_threshold", "audio_fault", "noread", "duplicate_serial", "identity_invalid"].map(c => [c, c])])),
    h("label", {}, "Model version", sel("model_version", [["", "any"],
      ...models.recorded.map(m => [m.version, `${m.name} v${m.version} (${m.parts})`])])),
    h("label", {}, "From", h("input", { type: "datetime-local", name: "from", value: toLocal(f.from_us) })),
    h("label", {}, "To", h("input", { type: "datetime-local", name: "to", value: toLocal(f.to_us) })),
    h("button", { type: "submit" }, "Apply"));
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    const d = new FormData(form);
    const us = v => v ? String(new Date(v).getTime() * 1000) : "";
    queueState.filters = { queue: d.get("queue"), reviewed: d.get("reviewed"), verdict: d.get("verdict"),
      reason: d.get("reason"), model_version: d.get("model_version"), from_us: us(d.get("from")), to_us: us(d.get("to")) };
    loadQueue(true);
  });
  view.replaceChildren(form,
    h("table", { id: "queue" }, h("thead", {}, h("tr", {}, ...["", "Part", "Decided", "Verdict", "Score / threshold",
      "Reasons", "Model", "Review"].map(t => h("th", {}, t)))), h("tbody", {})),
    h("p", {}, h("button", { id: "more", type: "button", onclick: () => loadQueue(false) }, "Load more"),
      " ", h("span", { class: "keys" }, h("kbd", {}, "J"), "/", h("kbd", {}, "K"), " move, ",
        h("kbd", {}, "Enter"), " open")));
  keyHandler = ev => {
    const n = queueState.parts.length;
    if (!n) return;
    if (ev.key === "j" || ev.key === "ArrowDown") queueState.sel = Math.min(n - 1, queueState.sel + 1);
    else if (ev.key === "k" || ev.key === "ArrowUp") queueState.sel = Math.max(0, queueState.sel - 1);
    else if (ev.key === "Enter") { location.hash = "#/part/" + queueState.parts[queueState.sel].part_id; return; }
    else return;
    ev.preventDefault();
    markSelected();
  };
  await loadQueue(true);
}

function markSelected() {
  document.querySelectorAll("#queue tbody tr").forEach((tr, i) => tr.classList.toggle("sel", i === queueState.sel));
}

async function loadQueue(fresh) {
  const page = await api(queueQuery(fresh ? null : queueState.next));
  if (fresh) { queueState.parts = []; queueState.sel = 0; }
  queueState.parts.push(...page.parts);
  queueState.next = page.next_before;
  sessionStorage.setItem("queue", JSON.stringify(queueState.parts.map(p => p.part_id)));
  const body = document.querySelector("#queue tbody");
  if (!body) return;
  body.replaceChildren(...queueState.parts.map(p => h("tr", {
      "data-part": p.part_id, onclick: () => { location.hash = "#/part/" + p.part_id; } },
    h("td", {}, p.image_path ? h("img", { src: imageUrl(p.image_path), alt: "", loading: "lazy" }) : ""),
    h("td", {}, p.part_id), h("td", {}, fmtTime(p.decided_us)), h("td", {}, verdictBadge(p)),
    h("td", {}, scoreText(p)), h("td", {}, reasonCodes(p).join(", ")),
    h("td", {}, p.model_name + " v" + p.model_version), h("td", {}, reviewText(p.review)))));
  if (!queueState.parts.length) body.append(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "Nothing to review.")));
  document.getElementById("more").hidden = !queueState.next;
  markSelected();
}

function neighbour(partId, step) {
  const ids = JSON.parse(sessionStorage.getItem("queue") || "[]");
  const i = ids.indexOf(partId);
  return i < 0 ? null : ids[i + step] || null;
}

async function partView(view, partId) {
  const p = await api("/api/parts/" + encodeURIComponent(partId));
  const classes = me.defect_classes;
  let classIdx = 0;
  const passed = p.verdict === "PASS";
  // The heat map is stored at the model's resolution; it is laid over the region of the frame the model saw.
  const heat = p.heatmap_path ? h("img", { class: "heat", src: imageUrl(p.heatmap_path), alt: "heat map", hidden: true }) : null;
  const frame = p.image_path ? h("img", { id: "part-image", src: imageUrl(p.image_path), alt: p.part_id }) : null;
  if (heat && frame && p.heatmap_roi) {
    const [x, y, w, hgt] = String(p.heatmap_roi).split(",").map(Number);
    const place = () => {
      const W = frame.naturalWidth, H = frame.naturalHeight;
      if (!W || !H) return;
      Object.assign(heat.style, { left: `${100 * x / W}%`, top: `${100 * y / H}%`, width: `${100 * w / W}%`, height: `${100 * hgt / H}%` });
    };
    frame.addEventListener("load", place);
    place();
  }
  const noImage = Number(p.images_skipped) > 0
    ? "This part's image was skipped: the image writer was behind (record.image_queue_mb). Its verdict and record are complete."
    : "No image was kept for this part.";
  const stage = h("div", { class: "stage" }, frame || h("p", { class: "muted", id: "no-image" }, noImage), heat);
  const toggleHeat = () => {
    if (!heat) return;
    heat.hidden = !heat.hidden;
    document.getElementById("heat-toggle")?.setAttribute("aria-pressed", String(!heat.hidden));
  };
  const score = Number(p.score ?? 0), thr = Number(p.threshold);
  const classSel = h("select", { id: "defect-class" },
    ...classes.map((c, i) => h("option", { value: c }, `${i + 1} ${c}`)));
  classSel.addEventListener("change", () => { classIdx = classSel.selectedIndex; classSel.blur(); });
  const comment = h("input", { type: "text", id: "comment", placeholder: "comment (optional)" });
  const review = async label => {
    const body = { part_id: p.part_id, label, comment: comment.value };
    if (label === "defect") body.defect_class = classes[classIdx];
    const r = await api("/api/reviews", { method: "POST", body });
    toast(`${p.part_id}: ${reviewText(r)}`);
    const next = neighbour(p.part_id, 1);
    if (next) location.hash = "#/part/" + next; else route();
  };
  const go = step => { const n = neighbour(p.part_id, step); if (n) location.hash = "#/part/" + n; else toast("end of the queue"); };
  const stages = Object.entries(p.stages).map(([k, v]) => h("tr", {}, h("td", {}, k.replace(/_ms$/, "").replace(/_/g, " ")),
    h("td", {}, v === null ? "–" : fmtNum(v, 2) + " ms")));
  // Columns other capabilities add (acoustic score, spectrogram) show here when the record has them.
  const extra = [];
  if (p.spectrogram_path) extra.push(h("img", { src: imageUrl(p.spectrogram_path), alt: "spectrogram", style: "width:100%" }));
  view.replaceChildren(h("div", { class: "part", id: "part", "data-part": p.part_id },
    h("div", {}, stage,
      heat ? h("button", { type: "button", id: "heat-toggle", class: "big", "aria-pressed": "false", onclick: toggleHeat },
        "Heat map ", h("kbd", {}, "H")) : null,
      extra.length ? h("div", { class: "panel" }, h("h3", {}, "Sound"), ...extra) : null),
    h("div", {},
      h("div", { class: "panel" }, h("h2", {}, p.part_id, " ", verdictBadge(p)),
        h("p", { class: "muted" }, fmtTime(p.decided_us), " · ", p.origin, p.truth ? " · truth " + p.truth : "")),
      h("div", { class: "panel" }, h("h3", {}, "Review"),
        h("p", { id: "review-status" }, reviewText(p.review)),
        h("div", { class: "actions" },
          h("button", { class: "good", id: "btn-good", type: "button", onclick: () => review("good") },
            passed ? "Confirm good " : "Override to good ", h("kbd", {}, "G")),
          classSel,
          h("button", { class: "defect", id: "btn-defect", type: "button", onclick: () => review("defect") },
            passed ? "Flag escape " : "Confirm defect ", h("kbd", {}, "D")),
          comment),
        h("div", { class: "actions", style: "margin-top:.5rem" },
          h("button", { type: "button", onclick: () => go(-1) }, "Previous ", h("kbd", {}, "K")),
          h("button", { type: "button", onclick: () => go(1) }, "Next ", h("kbd", {}, "J"))),
        h("p", { class: "keys" }, h("kbd", {}, "1"), "–", h("kbd", {}, String(classes.length)), " defect class · ",
          h("kbd", {}, "Esc"), " back to the queue"),
        p.reviews.length ? h("ul", { class: "muted" }, ...p.reviews.map(r =>
          h("li", {}, fmtTime(r.at_us), " ", r.user, ": ", r.label, r.defect_class ? " " + r.defect_class : "",
            r.comment ? " “" + r.comment + "”" : ""))) : null),
      h("div", { class: "panel" }, h("h3", {}, "Score against threshold"),
        scoreBar("vision", score, thr),
        p.acoustic_score !== undefined && p.acoustic_score !== null
          ? scoreBar("sound", Number(p.acoustic_score), Number(p.acoustic_threshold)) : null,
        h("h3", {}, "Reasons"),
        h("ul", {}, ...(p.reasons.length ? p.reasons : [{ code: "passed" }]).map(r =>
          h("li", {}, r.code, r.detail ? ": " + r.detail : "", r.stage ? " (at " + r.stage + ")" : "")))),
      h("div", { class: "panel" }, h("h3", {}, "Timings"), h("table", {}, h("tbody", {}, ...stages)),
        h("p", { class: "muted" }, `model ${p.model_name} v${p.model_version} · sha256 ${String(p.model_sha256).slice(0, 12)}`,
          ` · PLC ${p.plc_status} · result code ${p.result_code}`)))));
  keyHandler = ev => {
    const k = ev.key;
    if (k === "g") review("good").catch(e => toast(e.message));
    else if (k === "d") review("defect").catch(e => toast(e.message));
    else if (k === "h") toggleHeat();
    else if (k === "j" || k === "ArrowRight") go(1);
    else if (k === "k" || k === "ArrowLeft") go(-1);
    else if (k === "Escape") location.hash = "#/queue";
    else if (/^[1-9]$/.test(k) && Number(k) <= classes.length) { classIdx = Number(k) - 1; classSel.selectedIndex = classIdx; }
    else return;
    ev.preventDefault();
  };
}

async function route() {
  keyHandler = null;
  const view = document.getElementById("view");
  const hash = location.hash || "#/live";
  document.querySelectorAll("nav a").forEach(a => a.classList.toggle("active", hash.startsWith(a.getAttribute("href"))));
  try {
    if (hash.startsWith("#/part/")) await partView(view, decodeURIComponent(hash.slice(7)));
    else if (hash.startsWith("#/queue")) await queueView(view);
    else await liveView(view);
  } catch (e) {
    view.replaceChildren(h("p", { class: "error" }, e.message));
  }
}

async function appPage() {
  me = await api("/api/auth/me");
  document.getElementById("who").textContent = `${me.user.name} (${me.user.role})`;
  document.getElementById("logout").addEventListener("click", async () => {
    await api("/api/auth/logout", { method: "POST" }).catch(() => {});
    location.href = "/login";
  });
  document.addEventListener("keydown", ev => {
    // Typing in a text field is not a shortcut; a drop-down never swallows G/D (it gives the focus back).
    if (ev.target.closest && ev.target.closest("input:not([type=checkbox]), textarea") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (keyHandler) keyHandler(ev);
  });
  window.addEventListener("hashchange", route);
  startLive();
  await route();
}

if (location.pathname === "/login") loginPage(); else appPage();
