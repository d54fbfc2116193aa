// The explorer page: one grid from /api/sample, cut into clickable cells; every other image is a
// GET of a named computation (seed, n and sample numbers), so the page never sends a z.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  info: null, seed: 0, n: 64, pick: "interp",
  interp: [], a: [], b: [], c: [], base: null, selected: null,
};
const PAD = 2; // torchvision's make_grid padding around every sample of the grid PNG

function status(text) { $("status").textContent = text || ""; }

function query(params) {
  return new URLSearchParams({ seed: state.seed, n: state.n, ...params }).toString();
}

// Download links: the PNG and, with format=json, the z behind it.
function links(prefix, route, params, name) {
  const q = query(params);
  $(prefix + "-png").href = `${route}?${q}`;
  $(prefix + "-png").download = `${name}.png`;
  $(prefix + "-z").href = `${route}?${q}&format=json`;
  $(prefix + "-z").download = `${name}-z.json`;
}

// Fetch an image route; a 4xx/5xx shows its JSON error instead of a broken image.
async function fetchBlob(url) {
  const r = await fetch(url);
  if (!r.ok) {
    let msg = `${r.status}`;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r.blob();
}

async function show(img, url) {
  img.removeAttribute("data-loaded");
  try {
    const blob = await fetchBlob(url);
    const old = img.src;
    img.onload = () => { img.dataset.loaded = "1"; if (old.startsWith("blob:")) URL.revokeObjectURL(old); };
    img.src = URL.createObjectURL(blob);
    status("");
  } catch (e) { status(e.message); }
}

function describe(info) {
  const facts = [
    ["model", `${info.dataset} · ${info.image_size}×${info.image_size} · ${info.channels} channel(s) · z: ${info.nz} (${info.z_dist})`],
    ["training", `step ${info.step ?? "?"}` + (info.images_shown ? ` · ${info.images_shown.toLocaleString()} images shown` : "")],
  ];
  const best = info.best || info.last_eval;
  if (best) {
    const key = info.eval_protocol.best;
    const val = best[key];
    facts.push([info.best ? "best score" : "last score",
      `${key} ${typeof val === "number" ? val.toFixed(3) : "?"} at step ${best.step}` +
      ` (${best.n_gen ?? info.eval_protocol.num_samples} samples vs ${best.n_real ?? "all"} ${best.split ?? info.eval_protocol.split} images` +
      (best.features ? `, ${best.features}` : "") + ")"]);
  } else {
    facts.push(["scores", "none recorded"]);
  }
  facts.push(["from", info.source]);
  $("facts").replaceChildren(...facts.map(([k, v]) => {
    const div = document.createElement("div");
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    div.append(dt, dd);
    return div;
  }));
}

// --- the grid ---------------------------------------------------------------------------------

async function loadGrid() {
  const S = state.info.image_size;
  const tile = Math.max(64, S);
  document.documentElement.style.setProperty("--tile", `${tile}px`);
  $("seed-shown").textContent = `seed ${state.seed}, ${state.n} samples`;
  $("seed").value = state.seed;
  links("grid", "/api/sample", {}, `dcgan-seed${state.seed}-n${state.n}`);
  const grid = $("grid");
  grid.setAttribute("aria-busy", "true");
  let bitmap;
  try {
    bitmap = await createImageBitmap(await fetchBlob(`/api/sample?${query({})}`));
  } catch (e) { status(e.message); return; }
  const ncol = Math.ceil(Math.sqrt(state.n));
  grid.style.gridTemplateColumns = `repeat(${ncol}, ${tile}px)`;
  const cells = [];
  for (let i = 0; i < state.n; i++) {
    const cell = document.createElement("div");
    cell.className = "cell";
    cell.dataset.index = i;
    cell.title = `sample ${i}`;
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = S;
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(bitmap, PAD + (i % ncol) * (S + PAD), PAD + Math.floor(i / ncol) * (S + PAD), S, S, 0, 0, S, S);
    const badges = document.createElement("span");
    badges.className = "badges";
    cell.append(canvas, badges);
    cell.addEventListener("click", () => pick(i));
    cells.push(cell);
  }
  grid.replaceChildren(...cells);
  grid.removeAttribute("aria-busy");
  grid.dataset.seed = state.seed;
  grid.dataset.ready = "1";
  mark();
}

function resetPicks() {
  Object.assign(state, { interp: [], a: [], b: [], c: [], base: null, selected: null });
}

function setDraw(seed, n) {
  state.seed = seed;
  state.n = n;
  resetPicks();
  loadGrid();
}

// Badges and outlines from the state: A/B/C/base tags and the two interpolation ends.
function mark() {
  for (const cell of $("grid").children) {
    const i = Number(cell.dataset.index);
    const tags = [["a", "A"], ["b", "B"], ["c", "C"]].filter(([g]) => state[g].includes(i));
    if (state.base === i) tags.push(["base", "base"]);
    cell.querySelector(".badges").replaceChildren(...tags.map(([cls, text]) => {
      const t = document.createElement("b"); t.className = `tag ${cls}`; t.textContent = text; return t;
    }));
    cell.classList.toggle("interp", state.interp.includes(i));
    cell.classList.toggle("sel", state.selected === i);
  }
  for (const g of ["a", "b", "c"]) $(`group-${g}`).textContent = state[g].length ? state[g].map((i) => `#${i}`).join(" ") : "–";
  saveHash();
}

// The page's state lives in the URL fragment (never sent to the server): a link reopens it.
function saveHash() {
  const h = new URLSearchParams({ seed: state.seed, n: state.n });
  for (const g of ["interp", "a", "b", "c"]) if (state[g].length) h.set(g, state[g].join(","));
  if (state.base !== null) h.set("base", state.base);
  if (Number($("strength").value) !== 0) h.set("s", $("strength").value);
  history.replaceState(null, "", `#${h.toString().replaceAll("%2C", ",")}`);
}

function loadHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  const int = (v, max) => (/^[0-9]{1,10}$/.test(v ?? "") && Number(v) <= max ? Number(v) : null);
  const seed = int(h.get("seed"), state.info.limits.seed);
  if (seed !== null) state.seed = seed;
  const n = int(h.get("n"), 1000);
  if ([16, 36, 64, 100].includes(n)) { state.n = n; $("n").value = String(n); }
  const list = (k) => (h.get(k) || "").split(",").map((v) => int(v, state.n - 1)).filter((v) => v !== null)
    .slice(0, state.info.limits.group);
  for (const g of ["a", "b", "c"]) state[g] = list(g);
  state.interp = list("interp").slice(0, 2);
  state.base = int(h.get("base"), state.n - 1);
  const sv = Number(h.get("s"));
  if (Number.isFinite(sv) && Math.abs(sv) <= 2) $("strength").value = String(sv);
}

// After the grid is drawn: show what the fragment asked for.
function replay() {
  if (state.interp.length === 2) interpolate(...state.interp);
  if (state.a.length && state.b.length && state.c.length) compute();
  else walk();
  const last = state.base ?? state.interp[state.interp.length - 1];
  if (last !== undefined && last !== null) select(last);
  mark();
}

function select(i) {
  state.selected = i;
  $("sel-index").textContent = `#${i}`;
  const src = $("grid").children[i].querySelector("canvas");
  const canvas = $("sel-canvas");
  canvas.width = src.width; canvas.height = src.height;
  canvas.getContext("2d").drawImage(src, 0, 0);
  links("sel", "/api/image", { index: i }, `dcgan-seed${state.seed}-n${state.n}-sample${i}`);
}

function pick(i) {
  select(i);
  const mode = state.pick;
  if (mode === "interp") {
    state.interp = state.interp.length >= 2 ? [i] : [...state.interp, i];
    if (state.interp.length === 2) interpolate(...state.interp);
  } else if (mode === "base") {
    state.base = i;
    walk();
  } else {
    const g = state[mode];
    const at = g.indexOf(i);
    if (at >= 0) g.splice(at, 1);
    else if (g.length < state.info.limits.group) g.push(i);
    else status(`a group holds at most ${state.info.limits.group} samples`);
  }
  mark();
}

// --- interpolation, arithmetic, walk ----------------------------------------------------------

function interpolate(a, b) {
  $("interp-ends").textContent = `#${a} → #${b}`;
  for (const mode of ["linear", "spherical"]) {
    const params = { a, b, steps: 9, mode };
    show($(`interp-${mode}`), `/api/interpolate?${query(params)}`);
    links(`interp-${mode}`, "/api/interpolate", params, `dcgan-${mode}-${a}-${b}`);
  }
}

function compute() {
  if (!state.a.length || !state.b.length || !state.c.length) {
    status("pick at least one sample for each of A, B and C"); return;
  }
  const params = { a: state.a.join(","), b: state.b.join(","), c: state.c.join(",") };
  show($("arith-img"), `/api/arithmetic?${query(params)}`);
  links("arith", "/api/arithmetic", params, `dcgan-arithmetic-seed${state.seed}`);
  walk();
}

let walkTimer = null;
function walk() {
  const s = Number($("strength").value);
  $("strength-value").textContent = s.toFixed(2);
  if (!state.a.length || !state.b.length || state.base === null) return;
  const params = { a: state.a.join(","), b: state.b.join(","), base: state.base, strength: s };
  clearTimeout(walkTimer); // at most one request per slider pause
  walkTimer = setTimeout(() => {
    show($("walk-img"), `/api/walk?${query(params)}`);
    links("walk", "/api/walk", params, `dcgan-walk-${state.base}-s${s}`);
  }, 40);
}

// --- start --------------------------------------------------------------------------------------

async function start() {
  const r = await fetch("/api/info");
  state.info = await r.json();
  describe(state.info);
  loadHash();
  $("new-seed").addEventListener("click", () => {
    setDraw(crypto.getRandomValues(new Uint32Array(1))[0], state.n);
  });
  $("seed").addEventListener("change", () => {
    const s = Number($("seed").value);
    if (Number.isInteger(s) && s >= 0 && s <= state.info.limits.seed) setDraw(s, state.n);
    else status(`a seed is a whole number in 0..${state.info.limits.seed}`);
  });
  $("n").addEventListener("change", () => setDraw(state.seed, Number($("n").value)));
  for (const r of document.querySelectorAll("input[name=pick]")) {
    r.addEventListener("change", () => { state.pick = r.value; });
  }
  $("compute").addEventListener("click", compute);
  $("clear").addEventListener("click", () => { state.a = []; state.b = []; state.c = []; state.base = null; mark(); });
  $("strength").addEventListener("input", () => { walk(); saveHash(); });
  await loadGrid();
  replay();
}

start().catch((e) => status(`could not start: ${e.message}`));
