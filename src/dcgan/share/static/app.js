// The explorer page. One state object, changed only by `commit`, and one `render(state)` that
// draws every panel from it. Every user action is a function from the committed state to the
// next one; the images the next state needs are fetched first and the next state is committed
// only when all of them arrived (nothing on screen changes before the server answers; a failed
// action leaves the page as it was and says why in the panel it concerns). A panel's images
// are a pure function of the state (`wanted`), so an action updates every panel that depends
// on what it changed, or clears it. Samples are named (seed, n, index), never sent as numbers.
"use strict";

const $ = (id) => document.getElementById(id);
const PAD = 2; // torchvision's make_grid padding around every sample of a grid PNG
const STEPS = 9; // frames of an interpolation strip
const RESULTS = ["interp", "arith", "walk"];
const PANELS = ["grid", ...RESULTS];

class InputError extends Error {
  constructor(panel, message) { super(message); this.panel = panel; }
}

const none = () => ({ grid: "", interp: "", arith: "", walk: "" });
let state = {
  info: null,
  pick: "interp", // what a click on a sample does (the radio buttons; not sent anywhere)
  seed: 0, n: 64, grid: null, // grid: {seed, n, bitmap} of the samples on screen
  interp: [], a: [], b: [], c: [], base: null, selected: null,
  arith: false, // A - B + C was asked for (and is shown while every group has a sample)
  strength: 0,
  results: { interp: null, arith: null, walk: null }, // {key, label, images: [{name, url, png, z, file}]}
  busy: { grid: false, interp: false, arith: false, walk: false },
  errors: none(),
  fatal: "",
};

function copy(s) {
  return { ...s, interp: [...s.interp], a: [...s.a], b: [...s.b], c: [...s.c], results: { ...s.results },
    busy: { ...s.busy }, errors: { ...s.errors } };
}

// --- what a state shows -----------------------------------------------------------------------

function query(s, params) {
  return new URLSearchParams({ seed: s.seed, n: s.n, ...params }).toString();
}

function image(s, name, route, params, file) {
  const q = query(s, params);
  return { name, png: `${route}?${q}`, z: `${route}?${q}&format=json`, file };
}

function result(label, images) {
  return { key: images.map((i) => i.png).join(" "), label, images };
}

// The images each result panel shows for state s (null: the panel is empty).
function wanted(s) {
  const w = { interp: null, arith: null, walk: null };
  const tag = `seed${s.seed}-n${s.n}`;
  if (s.interp.length === 2) {
    const [a, b] = s.interp;
    w.interp = result(`#${a} → #${b}`, ["linear", "spherical"].map((mode) =>
      image(s, mode, "/api/interpolate", { a, b, steps: STEPS, mode }, `dcgan-${tag}-${mode}-${a}-${b}`)));
  }
  const [a, b, c] = [s.a.join(","), s.b.join(","), s.c.join(",")];
  if (s.arith && a && b && c) {
    w.arith = result(`A ${a} − B ${b} + C ${c}`,
      [image(s, "arith", "/api/arithmetic", { a, b, c }, `dcgan-${tag}-arithmetic`)]);
  }
  if (a && b && s.base !== null) {
    w.walk = result(`#${s.base}, s = ${s.strength.toFixed(2)}`, [image(s, "walk", "/api/walk",
      { a, b, base: s.base, strength: s.strength }, `dcgan-${tag}-walk-${s.base}-s${s.strength}`)]);
  }
  return w;
}

// --- talking to the server --------------------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A route's bytes; a 4xx/5xx throws its JSON error, a 503 (busy) is retried a few times.
async function fetchBlob(url) {
  for (let attempt = 0; ; attempt++) {
    let r;
    try {
      r = await fetch(url);
      if (r.status === 503 && attempt < 3) { await sleep(300 * (attempt + 1)); continue; }
      if (r.ok) return await r.blob();
    } catch (e) {
      throw new Error("the explorer did not answer (is `dcgan serve` still running?); nothing was changed");
    }
    let msg = `the server answered ${r.status}`;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
}

async function fetchGrid(s) {
  const bitmap = await createImageBitmap(await fetchBlob(`/api/sample?${query(s, {})}`));
  return { seed: s.seed, n: s.n, bitmap };
}

async function fetchResult(want) {
  const blobs = await Promise.all(want.images.map((i) => fetchBlob(i.png)));
  return { ...want, images: want.images.map((i, k) => ({ ...i, url: URL.createObjectURL(blobs[k]) })) };
}

function revoke(res) {
  for (const i of res?.images || []) URL.revokeObjectURL(i.url);
}

// --- actions ------------------------------------------------------------------------------------

let queue = Promise.resolve();
let reveal = null; // the result panel to scroll into view once its image is drawn

// Run `change` (committed state -> next state, null for nothing, or InputError) after the actions
// before it: actions run one at a time, each from the state the one before committed.
function act(change, { scroll = true } = {}) {
  queue = queue.then(() => run(change, scroll)).catch((e) => { state.fatal = `internal error: ${e.message}`; render(state); });
  return queue;
}

async function run(change, scroll) {
  const from = state;
  let next;
  try {
    next = change(copy(from));
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    state = { ...state, errors: { ...state.errors, [e.panel]: e.message } };
    render(state);
    return;
  }
  if (next === null) return; // nothing to do
  const needGrid = !from.grid || next.seed !== from.grid.seed || next.n !== from.grid.n;
  const want = wanted(next);
  const jobs = {};
  if (needGrid) jobs.grid = fetchGrid(next);
  for (const p of RESULTS) {
    if (want[p] && want[p].key !== from.results[p]?.key) jobs[p] = fetchResult(want[p]);
  }
  const names = Object.keys(jobs);
  if (names.length) {
    state = { ...state, busy: { ...state.busy, ...Object.fromEntries(names.map((p) => [p, true])) } };
    render(state);
  }
  const settled = await Promise.allSettled(names.map((p) => jobs[p]));
  const got = {};
  const failed = {};
  names.forEach((p, k) => {
    if (settled[k].status === "fulfilled") got[p] = settled[k].value;
    else failed[p] = settled[k].reason.message;
  });
  const idle = { grid: false, interp: false, arith: false, walk: false };
  if (Object.keys(failed).length) { // nothing changes but the error messages
    for (const p of RESULTS) revoke(got[p]);
    const errors = { ...state.errors, ...failed };
    state = { ...state, busy: idle, errors };
    render(state);
    return;
  }
  next.grid = got.grid || from.grid;
  for (const p of RESULTS) {
    next.results[p] = want[p] ? (got[p] || from.results[p]) : null;
    if (from.results[p] && from.results[p] !== next.results[p]) revoke(from.results[p]);
  }
  next.pick = state.pick; // changed by the radio buttons meanwhile
  next.busy = idle;
  next.errors = none(); // errors are cleared by the next success
  next.fatal = "";
  reveal = scroll ? RESULTS.find((p) => got[p]) || null : null;
  state = next;
  render(state);
}

// A new grid: the picks named samples of the old one, so they and every result go.
function newDraw(s, seed, n) {
  if (s.grid && seed === s.grid.seed && n === s.grid.n) return s;
  return Object.assign(s, { seed, n, interp: [], a: [], b: [], c: [], base: null, selected: null, arith: false });
}

function pick(i) {
  const clicked = state.grid; // a click names a sample of the grid on screen when it was made
  act((s) => {
    if (s.grid !== clicked) return null; // that grid has been replaced meanwhile
    const mode = state.pick;
    if (mode === "interp") {
      s.interp = s.interp.length >= 2 ? [i] : [...s.interp, i];
    } else if (mode === "base") {
      s.base = i;
    } else {
      const g = s[mode];
      const at = g.indexOf(i);
      if (at >= 0) g.splice(at, 1);
      else if (g.length < s.info.limits.group) g.push(i);
      else throw new InputError("arith", `a group holds at most ${s.info.limits.group} samples`);
    }
    s.selected = i;
    return s;
  });
}

// --- rendering ----------------------------------------------------------------------------------

let drawn = null; // the grid whose cells are on the page

function tileSize(s) { return Math.max(64, s.info.image_size); }

function setLinks(prefix, img) {
  for (const [kind, suffix] of [["png", ".png"], ["z", "-z.json"]]) {
    const a = $(`${prefix}-${kind}`);
    if (img) { a.href = img[kind]; a.download = `${img.file}${suffix}`; } else { a.removeAttribute("href"); }
  }
}

// An image element from a result image (or none: hidden, so no broken-image placeholder).
function setImage(el, img, width, panel) {
  el.closest("figure").classList.toggle("empty", !img);
  if (!img) {
    el.hidden = true;
    el.removeAttribute("src");
    el.removeAttribute("data-loaded");
    return;
  }
  if (el.getAttribute("src") !== img.url) {
    el.removeAttribute("data-loaded");
    el.onload = () => {
      if (el.getAttribute("src") !== img.url) return; // replaced or cleared meanwhile
      el.style.width = `${width(el)}px`;
      el.hidden = false;
      el.dataset.loaded = "1";
      if (reveal === panel) { // a result the user asked for: bring it into view
        reveal = null;
        (panel === "interp" ? $("interp") : el.closest("figure")).scrollIntoView({ block: "nearest" });
      }
    };
    el.src = img.url;
  }
}

function drawGrid(s) {
  const S = s.info.image_size;
  const tile = tileSize(s);
  document.documentElement.style.setProperty("--tile", `${tile}px`);
  const grid = $("grid");
  if (!s.grid) { grid.replaceChildren(); grid.removeAttribute("data-ready"); drawn = null; return; }
  if (drawn === s.grid) return;
  const { bitmap, n } = s.grid;
  const ncol = Math.ceil(Math.sqrt(n));
  grid.style.gridTemplateColumns = `repeat(${ncol}, ${tile}px)`;
  const cells = [];
  for (let i = 0; i < n; i++) {
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
  grid.dataset.seed = s.grid.seed;
  grid.dataset.ready = "1";
  drawn = s.grid;
}

function drawMarks(s) {
  for (const cell of $("grid").children) {
    const i = Number(cell.dataset.index);
    const tags = [["a", "A"], ["b", "B"], ["c", "C"]].filter(([g]) => s[g].includes(i));
    if (s.base === i) tags.push(["base", "base"]);
    cell.querySelector(".badges").replaceChildren(...tags.map(([cls, text]) => {
      const t = document.createElement("b"); t.className = `tag ${cls}`; t.textContent = text; return t;
    }));
    cell.classList.toggle("interp", s.interp.includes(i));
    cell.classList.toggle("sel", s.selected === i);
  }
  for (const g of ["a", "b", "c"]) $(`group-${g}`).textContent = s[g].length ? s[g].map((i) => `#${i}`).join(" ") : "–";
}

function drawSelected(s) {
  const canvas = $("sel-canvas");
  const src = s.selected === null ? null : $("grid").children[s.selected]?.querySelector("canvas");
  $("sel-index").textContent = src ? `#${s.selected}` : "–";
  canvas.hidden = !src;
  setLinks("sel", src ? image(s, "sel", "/api/image", { index: s.selected }, `dcgan-seed${s.seed}-n${s.n}-sample${s.selected}`) : null);
  if (!src) return;
  canvas.width = src.width; canvas.height = src.height;
  canvas.getContext("2d").drawImage(src, 0, 0);
}

function drawResults(s) {
  const S = s.info.image_size;
  const tile = tileSize(s);
  const scale = tile / S; // strips and results: every frame at least a grid tile wide
  const fig7 = S * Math.max(1, Math.floor(64 / S)); // the Fig. 7 PNG's own tile (latent.fig7_image)
  const res = s.results;
  $("interp-ends").textContent = res.interp ? res.interp.label : "";
  for (const [k, mode] of ["linear", "spherical"].entries()) {
    const img = res.interp?.images[k] || null;
    setImage($(`interp-${mode}`), img, (el) => el.naturalWidth * scale, "interp");
    setLinks(`interp-${mode}`, img);
  }
  const arith = res.arith?.images[0] || null;
  setImage($("arith-img"), arith, (el) => el.naturalWidth * tile / fig7, "arith");
  setLinks("arith", arith);
  const walk = res.walk?.images[0] || null;
  setImage($("walk-img"), walk, () => 2 * tile, "walk");
  setLinks("walk", walk);
}

function drawMessages(s) {
  for (const p of PANELS) {
    const el = $(`${p}-msg`);
    const error = s.errors[p];
    el.textContent = error || (s.busy[p] ? "computing…" : "");
    el.className = `msg${error ? " error" : s.busy[p] ? " busy" : ""}`;
    const host = { grid: $("grid"), interp: $("interp"), arith: $("arith-fig"), walk: $("walk-fig") }[p];
    host.setAttribute("aria-busy", String(s.busy[p]));
  }
  $("status").textContent = s.fatal;
}

function drawControls(s) {
  const seedBox = $("seed");
  if (!s.busy.grid) { seedBox.value = String(s.seed); $("n").value = String(s.n); }
  $("seed-shown").textContent = s.grid ? `seed ${s.grid.seed}, ${s.grid.n} samples` : "";
  setLinks("grid", s.grid ? image(s, "grid", "/api/sample", {}, `dcgan-seed${s.seed}-n${s.n}`) : null);
  for (const r of document.querySelectorAll("input[name=pick]")) r.checked = r.value === s.pick;
  if (!sliding) $("strength").value = String(s.strength);
  $("strength-value").textContent = s.strength.toFixed(2);
}

function render(s) {
  if (!s.info) { $("status").textContent = s.fatal; return; }
  drawControls(s);
  drawGrid(s);
  drawMarks(s);
  drawSelected(s);
  drawResults(s);
  drawMessages(s);
  if (s.grid) saveHash(s);
}

// --- the URL fragment: the state a link reopens (never sent to the server) ---------------------

function saveHash(s) {
  const h = new URLSearchParams({ seed: s.seed, n: s.n });
  for (const g of ["interp", "a", "b", "c"]) if (s[g].length) h.set(g, s[g].join(","));
  if (s.base !== null) h.set("base", s.base);
  if (s.strength !== 0) h.set("s", s.strength);
  const hash = `#${h.toString().replaceAll("%2C", ",")}`;
  if (location.hash !== hash) history.replaceState(null, "", hash);
}

function loadHash(s) {
  const h = new URLSearchParams(location.hash.slice(1));
  const int = (v, max) => (/^[0-9]{1,10}$/.test(v ?? "") && Number(v) <= max ? Number(v) : null);
  const seed = int(h.get("seed"), s.info.limits.seed);
  if (seed !== null) s.seed = seed;
  const n = int(h.get("n"), 1000);
  if ([16, 36, 64, 100].includes(n)) s.n = n;
  const list = (k) => (h.get(k) || "").split(",").map((v) => int(v, s.n - 1)).filter((v) => v !== null)
    .slice(0, s.info.limits.group);
  for (const g of ["a", "b", "c"]) s[g] = list(g);
  s.interp = list("interp").slice(0, 2);
  s.base = int(h.get("base"), s.n - 1);
  s.arith = Boolean(s.a.length && s.b.length && s.c.length);
  const sv = Number(h.get("s"));
  if (h.has("s") && Number.isFinite(sv) && Math.abs(sv) <= 2) s.strength = sv;
  const last = s.base ?? s.interp[s.interp.length - 1];
  s.selected = last ?? null;
  return s;
}

// --- the header -----------------------------------------------------------------------------------

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

// --- start --------------------------------------------------------------------------------------

let sliding = false; // a slider move waits for its walk: render leaves the thumb where the hand is
let slideTimer = null;

function wire() {
  $("new-seed").addEventListener("click", () => {
    const seed = crypto.getRandomValues(new Uint32Array(1))[0];
    act((s) => newDraw(s, seed, s.n));
  });
  $("seed").addEventListener("change", () => {
    const v = $("seed").value.trim();
    act((s) => {
      if (!/^[0-9]{1,10}$/.test(v) || Number(v) > s.info.limits.seed) {
        throw new InputError("grid", `a seed is a whole number in 0..${s.info.limits.seed}; the grid still shows seed ${s.seed}`);
      }
      return newDraw(s, Number(v), s.n);
    });
  });
  $("n").addEventListener("change", () => {
    const n = Number($("n").value);
    act((s) => newDraw(s, s.seed, n));
  });
  for (const r of document.querySelectorAll("input[name=pick]")) {
    r.addEventListener("change", () => { state = { ...state, pick: r.value }; });
  }
  $("compute").addEventListener("click", () => act((s) => {
    if (!s.a.length || !s.b.length || !s.c.length) {
      throw new InputError("arith", "pick at least one sample for each of A, B and C");
    }
    s.arith = true;
    return s;
  }));
  $("clear").addEventListener("click", () => act((s) => Object.assign(s, { a: [], b: [], c: [], base: null, arith: false })));
  $("strength").addEventListener("input", () => {
    sliding = true;
    $("strength-value").textContent = `${Number($("strength").value).toFixed(2)}…`;
    clearTimeout(slideTimer); // at most one request per slider pause
    slideTimer = setTimeout(() => {
      const v = Number($("strength").value);
      act((s) => { s.strength = v; return s; }).then(() => { if (slideTimer === null) { sliding = false; render(state); } });
      slideTimer = null;
    }, 40);
  });
}

async function start() {
  let info;
  try {
    const r = await fetch("/api/info");
    info = await r.json();
  } catch (e) {
    state = { ...state, fatal: "could not reach the explorer: is `dcgan serve` running?" };
    render(state);
    return;
  }
  state = { ...state, info };
  describe(info);
  wire();
  const wish = loadHash(copy(state));
  await act(() => wish, { scroll: false });
}

start();
