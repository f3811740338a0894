// The page of `vecsearch serve`: uploads photos to /api/search and shows the hits. Every name is
// put in the page as text (textContent), never as HTML. Images are fetched with the token, if the
// server needs one, and shown from blob: URLs.
"use strict";

const FETCH_K = 100; // hits asked for per query; the k box and the slider filter them here
const $ = (id) => document.getElementById(id);
const state = { queries: [], viewing: null, token: sessionStorage.getItem("vecsearch-token") };

function headers() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (response.status === 401) {
    askToken();
    throw new Error("this server needs its token");
  }
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try {
      message = (await response.json()).error || message;
    } catch (e) { /* not JSON: keep the status line */ }
    throw new Error(message);
  }
  return response;
}

function askToken() {
  $("token-form").hidden = false;
  $("token").focus();
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function size(bytes) {
  if (bytes === undefined || bytes === null) return "";
  const units = ["B", "kB", "MB", "GB"];
  let n = bytes, u = 0;
  while (n >= 1000 && u < units.length - 1) { n /= 1000; u++; }
  return (u ? n.toFixed(1) : n) + " " + units[u];
}

const thumbnails = new Map(); // image id → promise of a blob: URL

function thumbnail(id) {
  if (!thumbnails.has(id)) {
    thumbnails.set(id, api(`/api/images/${id}/thumbnail?size=320`)
      .then((r) => r.blob()).then((b) => URL.createObjectURL(b))
      .catch(() => { thumbnails.delete(id); return ""; }));
  }
  return thumbnails.get(id);
}

async function showImage(img, id, full) {
  img.src = full
    ? URL.createObjectURL(await (await api(`/api/images/${id}`)).blob())
    : await thumbnail(id);
}

// --- searching -------------------------------------------------------------------------------

async function search(blob, name) {
  const query = { name, url: URL.createObjectURL(blob), blob, hits: null, error: null };
  state.queries.unshift(query);
  render();
  const form = new FormData();
  form.append("image", blob, name);
  const verify = $("verify").checked;
  try {
    const r = await api(`/api/search?k=${FETCH_K}&verify=${verify}`, { method: "POST", body: form });
    query.hits = (await r.json()).results[0].hits;
  } catch (e) {
    query.error = e.message;
  }
  render();
}

function searchFiles(files) {
  const images = [...files].filter((f) => f.type.startsWith("image/") || f.type === "");
  if (!images.length) {
    $("status").textContent = "Nothing to search: drop or pick image files.";
    return;
  }
  for (const f of images) search(f, f.name || "pasted image");
}

async function findCopies(hit) {
  $("viewer").close();
  try {
    const blob = await (await api(`/api/images/${hit.id}`)).blob();
    await search(blob, hit.path);
  } catch (e) {
    $("status").textContent = `Cannot fetch ${hit.path}: ${e.message}`;
  }
}

function shownHits(query) {
  const least = Number($("min-similarity").value);
  const k = Math.max(1, Math.min(FETCH_K, Number($("k").value) || 1));
  return (query.hits || []).filter((h) => h.similarity >= least).slice(0, k);
}

function render() {
  $("min-shown").textContent = $("min-similarity").value;
  const results = $("results");
  results.replaceChildren(...state.queries.map(renderQuery));
  const pending = state.queries.filter((q) => q.hits === null && q.error === null).length;
  $("status").textContent = pending ? `Searching ${pending} photo${pending > 1 ? "s" : ""}…` : "";
}

function renderQuery(query) {
  const section = element("section", "query");
  const head = element("div", "query-head");
  const img = element("img");
  img.src = query.url;
  img.alt = "";
  head.append(img, element("h2", "", query.name));
  section.append(head);
  if (query.error) {
    section.append(element("p", "error", query.error));
    return section;
  }
  if (query.hits === null) return section;
  const hits = shownHits(query);
  const count = element("p", "count",
    `${hits.length} of ${query.hits.length} hit${query.hits.length === 1 ? "" : "s"} shown`);
  const gallery = element("ol", "gallery");
  hits.forEach((hit, n) => gallery.append(renderHit(query, hits, n)));
  section.append(count, gallery);
  return section;
}

function renderHit(query, hits, n) {
  const hit = hits[n];
  const item = element("li", "hit");
  const button = element("button");
  button.type = "button";
  button.setAttribute("aria-label", `${hit.similarity}%: ${hit.path}`);
  const img = element("img");
  img.alt = "";
  img.loading = "lazy";
  showImage(img, hit.id, false);
  const percent = element("span", "percent", `${hit.similarity}%`);
  button.append(img, percent);
  button.addEventListener("click", () => openViewer(query, hits, n));
  const facts = element("p", "facts", `${hit.width}×${hit.height} · ${size(hit.bytes)}` + checked(hit));
  item.append(button, element("p", "path", hit.path), facts);
  return item;
}

// What verification found (of a hit, or of a group member against its keeper): its keypoint
// inliers and, where they verify it, how well the two pictures agree once aligned (near 1 for a
// copy, less for another shot of the scene) and how far the inliers stray from the alignment (least
// for a copy).
function checked(hit) {
  if (hit.inliers == null) return "";
  const agrees = hit.agreement == null ? "" : `, agreement ${hit.agreement.toFixed(3)}`;
  const strays = hit.residual == null ? "" : `, residual ${hit.residual.toFixed(2)}`;
  return ` · ${hit.inliers} inliers${agrees}${strays}`;
}

// --- the large view ----------------------------------------------------------------------------

function openViewer(query, hits, n) {
  state.viewing = { query, hits, n };
  const hit = hits[n];
  $("viewer-query").src = query.url;
  $("viewer-query-name").textContent = "Query: " + query.name;
  $("viewer-hit").src = "";
  showImage($("viewer-hit"), hit.id, true).catch((e) => { $("viewer-facts").textContent = e.message; });
  $("viewer-hit-name").textContent = hit.path;
  $("viewer-facts").textContent = `#${hit.rank} · ${hit.similarity}% · ${hit.width}×${hit.height} · `
    + size(hit.bytes) + checked(hit);
  $("viewer-prev").disabled = n === 0;
  $("viewer-next").disabled = n === hits.length - 1;
  if (!$("viewer").open) $("viewer").showModal();
}

function step(by) {
  const v = state.viewing;
  if (v && v.n + by >= 0 && v.n + by < v.hits.length) openViewer(v.query, v.hits, v.n + by);
}

// --- near-duplicates ---------------------------------------------------------------------------

async function findGroups(event) {
  event.preventDefault();
  const least = Number($("dedup-min").value);
  const verify = $("dedup-verify").checked;
  $("dedup-status").textContent = "Looking for near-duplicates…";
  $("groups").replaceChildren();
  try {
    const groups = (await (await api(`/api/dedup?min_similarity=${least}&verify=${verify}`)).json()).groups;
    $("dedup-status").textContent = groups.length
      ? `${groups.length} group${groups.length > 1 ? "s" : ""} at ${least}% or more; the suggested keeper is marked.`
      : `No images at ${least}% or more of each other.`;
    $("groups").replaceChildren(...groups.map(renderGroup));
  } catch (e) {
    $("dedup-status").textContent = e.message;
  }
}

function renderGroup(group) {
  const list = element("ol", "gallery group");
  for (const m of group) {
    const item = element("li", m.keep ? "hit keeper" : "hit");
    const img = element("img");
    img.alt = "";
    img.loading = "lazy";
    showImage(img, m.id, false);
    const badge = element("span", "percent", m.keep ? "keep" : `${m.similarity.toFixed(1)}%`);
    const box = element("div", "frame");
    box.append(img, badge);
    item.append(box, element("p", "path", m.path),
      element("p", "facts", `${m.width}×${m.height} · ${size(m.bytes)}` + checked(m)));
    list.append(item);
  }
  return list;
}

// --- the page ----------------------------------------------------------------------------------

function showView(name) {
  const dedup = name === "dedup";
  $("search-view").hidden = dedup;
  $("dedup-view").hidden = !dedup;
  $("show-search").setAttribute("aria-pressed", String(!dedup));
  $("show-dedup").setAttribute("aria-pressed", String(dedup));
}

async function about() {
  try {
    const info = await (await api("/api/info")).json();
    $("about").textContent = `${info.images.toLocaleString()} images · version ${info.version}`;
    const health = await (await fetch("/healthz")).json();
    $("problem").hidden = !health.problem;
    $("problem").textContent = health.problem ? "Serving an older version: " + health.problem : "";
  } catch (e) {
    $("about").textContent = e.message;
  }
}

function start() {
  $("pick").addEventListener("change", (e) => { searchFiles(e.target.files); e.target.value = ""; });
  document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
  document.addEventListener("dragleave", (e) => {
    if (!e.relatedTarget) document.body.classList.remove("dragging");
  });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    document.body.classList.remove("dragging");
    searchFiles(e.dataTransfer.files);
  });
  document.addEventListener("paste", (e) => {
    const files = [...e.clipboardData.items].filter((i) => i.kind === "file").map((i) => i.getAsFile());
    if (files.length) searchFiles(files);
  });
  $("min-similarity").addEventListener("input", render);
  $("k").addEventListener("input", render);
  $("show-search").addEventListener("click", () => showView("search"));
  $("show-dedup").addEventListener("click", () => showView("dedup"));
  $("dedup-form").addEventListener("submit", findGroups);
  $("viewer-close").addEventListener("click", () => $("viewer").close());
  $("viewer-prev").addEventListener("click", () => step(-1));
  $("viewer-next").addEventListener("click", () => step(1));
  $("viewer-copies").addEventListener("click", () => findCopies(state.viewing.hits[state.viewing.n]));
  $("viewer").addEventListener("keydown", (e) => {
    if (e.key === "ArrowLeft") step(-1);
    if (e.key === "ArrowRight") step(1);
  });
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("token").value;
    sessionStorage.setItem("vecsearch-token", state.token);
    $("token-form").hidden = true;
    thumbnails.clear();
    about();
  });
  about();
  setInterval(about, 10000);
}

start();
