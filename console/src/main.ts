// The operators' console, served by the Worker at /console: games (viewers,
// rounds per minute, commit → edge delay, relays, latest rounds), API keys
// (create, revoke, limits in use, 30 days of usage) and health. Plain DOM
// and uPlot; every figure comes from the admin routes of docs/protocol.md.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import "./style.css";

import { Admin, Refused, saveToken, savedToken } from "./api";
import { type DayUsage, type KeyForm, bare, duration, flagged, keyRequest, perMinute, percent, share, usageColumns } from "./format";

interface Delays {
  counts: number[];
  sum_ms: number;
}
interface StreamFigures {
  stream: string;
  viewers: number;
  relays: number;
  sockets: number;
  rounds: number;
  delays: Delays;
}
interface KeyFigures {
  key_id: string;
  streams_open: number;
  connects: number;
  rejected: number;
  stream_seconds: number;
  requests: number;
  connects_this_minute: number;
  requests_this_minute: number;
  max_streams: number;
  connects_per_minute: number;
  requests_per_minute: number;
}
interface Overview {
  streams: StreamFigures[];
  keys: KeyFigures[];
  failed_open: number;
  limits: string;
  config: string | string[];
}
interface Series {
  stream: string;
  t: number[];
  rounds: number[];
  viewers_peak: number[];
  viewers_last: number[];
  window: { rounds: number; rounds_per_minute: number; delay_p50: number | null; delay_p99: number | null; viewers_peak: number };
}
interface KeyRecord {
  id: string;
  name: string;
  games: string[] | null;
  types: string[] | null;
  origins: string[] | null;
  max_streams: number | null;
  connects_per_minute: number | null;
  requests_per_minute: number | null;
  created_at: string;
  expires_at: string | null;
  revoked: boolean;
}
interface Round {
  round_id: number;
  finished_at: string;
  extras: string;
}

/** Seconds between two reads of the figures. */
const REFRESH_MS = 10_000;

type Child = Node | string | null | undefined | false;

/** An element; text always goes in as text (names and extras are data). */
function h(tag: string, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, value);
  for (const child of children) if (child) el.append(child);
  return el;
}

const app = document.getElementById("app") as HTMLElement;
let admin: Admin | null = null;
let timer: ReturnType<typeof setTimeout> | undefined;
const charts = new Map<string, uPlot>();

function chartWidth(box: HTMLElement): number {
  return Math.max(200, Math.floor(box.getBoundingClientRect().width));
}

/** Draws (or redraws) a chart into `box`, kept by `id` across refreshes. */
function draw(id: string, box: HTMLElement, data: uPlot.AlignedData, series: uPlot.Series[], height = 110): void {
  const known = charts.get(id);
  if (known && box.contains(known.root)) {
    known.setData(data);
    return;
  }
  known?.destroy();
  const chart = new uPlot(
    {
      width: chartWidth(box),
      height,
      series: [{}, ...series],
      legend: { show: series.length > 1 },
      axes: [{ size: 28 }, { size: 40 }],
      scales: { x: { time: true } },
      cursor: { drag: { x: false, y: false } },
    },
    data,
    box,
  );
  charts.set(id, chart);
}

window.addEventListener("resize", () => {
  for (const chart of charts.values()) {
    const box = chart.root.parentElement;
    if (box) chart.setSize({ width: chartWidth(box), height: chart.height });
  }
});

function signIn(message?: string): void {
  admin = null;
  clearTimeout(timer);
  for (const chart of charts.values()) chart.destroy();
  charts.clear();
  const input = h("input", { type: "password", id: "token", autocomplete: "off", required: "", "aria-label": "Admin token" }) as HTMLInputElement;
  const form = h(
    "form",
    { id: "sign-in", class: "panel" },
    h("h1", {}, "gamefeed console"),
    h("p", {}, "The Worker's admin token. It stays in this tab only and is sent in a header, never in a URL."),
    input,
    h("button", { type: "submit" }, "Sign in"),
    message ? h("p", { class: "error", role: "alert" }, message) : null,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    saveToken(input.value.trim());
    void start();
  });
  app.replaceChildren(form);
  input.focus();
}

async function start(): Promise<void> {
  const token = savedToken();
  if (!token) return signIn();
  admin = new Admin(token);
  app.replaceChildren(layout());
  await refresh();
}

function layout(): HTMLElement {
  const out = h("button", { type: "button", id: "sign-out" }, "Sign out");
  out.addEventListener("click", () => {
    saveToken(null);
    signIn();
  });
  const again = h("button", { type: "button", id: "refresh" }, "Refresh");
  again.addEventListener("click", () => void refresh());
  return h(
    "div",
    { class: "console" },
    h("header", {}, h("h1", {}, "gamefeed console"), h("div", { id: "health", class: "health" }), again, out),
    h("p", { id: "status", class: "status", role: "status" }),
    h("section", { id: "games-section" }, h("h2", {}, "Games"), h("div", { id: "games", class: "cards" }), h("div", { id: "types" })),
    h("section", { id: "keys-section" }, h("h2", {}, "API keys"), createForm(), h("div", { id: "new-key" }), h("div", { id: "keys" })),
  );
}

function status(text: string, error = false): void {
  const el = document.getElementById("status");
  if (!el) return;
  el.textContent = text;
  el.className = error ? "status error" : "status";
}

async function refresh(): Promise<void> {
  clearTimeout(timer);
  const api = admin;
  if (!api) return;
  try {
    const [overview, records] = await Promise.all([api.get<Overview>("/admin/overview"), api.get<{ keys: KeyRecord[] }>("/admin/keys")]);
    if (api !== admin) return;
    renderHealth(overview);
    await renderGames(api, overview.streams);
    renderKeys(records.keys, overview);
    status(`Updated ${new Date().toLocaleTimeString()}`);
  } catch (err) {
    if (err instanceof Refused && err.status === 401) {
      saveToken(null);
      return signIn("That token was refused.");
    }
    status(`Could not read the figures: ${(err as Error).message}. Retrying.`, true);
  }
  if (api === admin) timer = setTimeout(() => void refresh(), REFRESH_MS);
}

function badge(label: string, value: string, bad: boolean, id: string): HTMLElement {
  return h("span", { class: bad ? "badge bad" : "badge", id }, `${label} `, h("b", {}, value));
}

function renderHealth(o: Overview): void {
  const config = o.config === "ok" ? "ok" : `check ${(o.config as string[]).join(", ")}`;
  document.getElementById("health")?.replaceChildren(
    badge("limits", o.limits, o.limits !== "on", "health-limits"),
    badge("failed open", String(o.failed_open), o.failed_open > 0, "health-failed-open"),
    badge("config", config, o.config !== "ok", "health-config"),
  );
}

function gameCard(slug: string): HTMLElement {
  const existing = document.querySelector<HTMLElement>(`.game[data-game="${CSS.escape(slug)}"]`);
  if (existing) return existing;
  const card = h(
    "article",
    { class: "game card", "data-game": slug },
    h("h3", {}, slug),
    h("p", { class: "big" }, h("span", { class: "viewers" }, "0"), " watching"),
    h("div", { class: "chart viewers-chart" }),
    h("dl", {}, h("dt", {}, "rounds per minute"), h("dd", { class: "rpm" }), h("dt", {}, "commit → edge, last hour"), h("dd", { class: "delay" }), h("dt", {}, "relays · feed sockets"), h("dd", { class: "fanout" })),
    h("h4", {}, "Latest rounds"),
    h("ol", { class: "rounds" }),
  );
  document.getElementById("games")?.append(card);
  return card;
}

function set(card: HTMLElement, selector: string, text: string): void {
  const el = card.querySelector(selector);
  if (el) el.textContent = text;
}

async function renderGames(api: Admin, streams: StreamFigures[]): Promise<void> {
  const games = streams.filter((s) => s.stream.startsWith("game:"));
  const reads = games.map(async (figures) => {
    const slug = bare(figures.stream);
    const path = `/admin/streams/game/${encodeURIComponent(slug)}`;
    const [series, latest] = await Promise.all([api.get<Series>(`${path}/series?minutes=60`), api.get<{ rounds: Round[] }>(`${path}/rounds?limit=5`)]);
    return { figures, slug, series, latest };
  });
  for (const { figures, slug, series, latest } of await Promise.all(reads)) {
    const card = gameCard(slug);
    set(card, ".viewers", String(figures.viewers));
    set(card, ".rpm", `${perMinute(series.window.rounds_per_minute)} (${series.window.rounds} in the last hour)`);
    set(card, ".delay", `p50 ${duration(series.window.delay_p50)} · p99 ${duration(series.window.delay_p99)}`);
    set(card, ".fanout", `${figures.relays} · ${figures.sockets}`);
    const box = card.querySelector<HTMLElement>(".viewers-chart");
    if (box) {
      draw(`viewers:${slug}`, box, [series.t, series.viewers_peak, series.rounds], [
        { label: "viewers", stroke: "#2563eb", width: 2 },
        { label: "rounds", stroke: "#16a34a", width: 1, scale: "rounds" },
      ]);
    }
    card.querySelector(".rounds")?.replaceChildren(
      ...latest.rounds.map((r) => h("li", {}, h("b", {}, `#${r.round_id}`), ` ${r.finished_at.slice(11, 19)} `, h("code", {}, r.extras))),
    );
  }
  const types = streams.filter((s) => s.stream.startsWith("type:"));
  document.getElementById("types")?.replaceChildren(
    h("h3", {}, "Game types"),
    h(
      "table",
      { class: "types" },
      h("thead", {}, h("tr", {}, h("th", {}, "type"), h("th", {}, "watching"), h("th", {}, "rounds"), h("th", {}, "relays"))),
      h("tbody", {}, ...types.map((t) => h("tr", { "data-type": bare(t.stream) }, h("td", {}, bare(t.stream)), h("td", {}, String(t.viewers)), h("td", {}, String(t.rounds)), h("td", {}, String(t.relays))))),
    ),
  );
}

function field(label: string, input: HTMLElement): HTMLElement {
  return h("label", {}, h("span", {}, label), input);
}

function createForm(): HTMLElement {
  const input = (name: string, attrs: Record<string, string> = {}) => h("input", { name, id: `new-${name}`, ...attrs }) as HTMLInputElement;
  const inputs = {
    name: input("name", { required: "", maxlength: "100", placeholder: "partner-a" }),
    games: input("games", { placeholder: "crash, double (all when empty)" }),
    types: input("types", { placeholder: "crash, dice" }),
    origins: input("origins", { placeholder: "https://partner.example" }),
    expires: input("expires", { type: "datetime-local" }),
    maxStreams: input("max_streams", { type: "number", min: "0", placeholder: "default" }),
    connectsPerMinute: input("connects_per_minute", { type: "number", min: "0", placeholder: "default" }),
    requestsPerMinute: input("requests_per_minute", { type: "number", min: "0", placeholder: "default" }),
    test: input("test", { type: "checkbox" }),
  };
  const problem = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { id: "create-key", class: "panel grid" },
    h("h3", {}, "New key"),
    field("Name", inputs.name),
    field("Games", inputs.games),
    field("Game types", inputs.types),
    field("Origins", inputs.origins),
    field("Expires", inputs.expires),
    field("Max streams", inputs.maxStreams),
    field("Connects per minute", inputs.connectsPerMinute),
    field("Requests per minute", inputs.requestsPerMinute),
    field("Test key (sk_test_)", inputs.test),
    h("button", { type: "submit" }, "Create key"),
    problem,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const typed: KeyForm = {
      name: inputs.name.value,
      games: inputs.games.value,
      types: inputs.types.value,
      origins: inputs.origins.value,
      expires: inputs.expires.value,
      maxStreams: inputs.maxStreams.value,
      connectsPerMinute: inputs.connectsPerMinute.value,
      requestsPerMinute: inputs.requestsPerMinute.value,
      test: inputs.test.checked,
    };
    const request = keyRequest(typed);
    if ("error" in request) {
      problem.textContent = request.error;
      return;
    }
    problem.textContent = "";
    admin
      ?.call<{ key: string; id: string }>("POST", "/admin/keys", request.body)
      .then((created) => {
        (form as HTMLFormElement).reset();
        showOnce(created.key, created.id);
        void refresh();
      })
      .catch((err: Error) => {
        problem.textContent = err.message;
      });
  });
  return form;
}

/** The new key, shown this once: it is stored nowhere but in its holder's hands. */
function showOnce(key: string, id: string): void {
  const code = h("code", { id: "new-key-value" }, key);
  const copy = h("button", { type: "button" }, "Copy");
  copy.addEventListener("click", () => void navigator.clipboard?.writeText(key));
  const done = h("button", { type: "button", id: "new-key-done" }, "I have saved it");
  done.addEventListener("click", () => document.getElementById("new-key")?.replaceChildren());
  document.getElementById("new-key")?.replaceChildren(
    h("div", { class: "panel once", role: "alert" }, h("p", {}, `Key ${id}. Copy it now: it is not shown again.`), code, copy, done),
  );
}

function scopes(r: KeyRecord): string {
  const parts = [r.games ? `games ${r.games.join(", ")}` : "", r.types ? `types ${r.types.join(", ")}` : ""].filter(Boolean);
  return parts.length ? parts.join("; ") : "every game";
}

function renderKeys(records: KeyRecord[], overview: Overview): void {
  const figures = new Map(overview.keys.map((k) => [k.key_id, k]));
  const rows = records.map((r) => {
    const f = figures.get(r.id);
    const shares = f ? [share(f.streams_open, f.max_streams), share(f.connects_this_minute, f.connects_per_minute), share(f.requests_this_minute, f.requests_per_minute)] : [];
    const hot = !r.revoked && flagged(shares);
    const usage = h("div", { class: "chart usage-chart", hidden: "" });
    const usageButton = h("button", { type: "button", class: "usage" }, "Usage, 30 days");
    usageButton.addEventListener("click", () => void showUsage(r.id, usage));
    const revoke = h("button", { type: "button", class: "revoke danger" }, "Revoke");
    revoke.addEventListener("click", () => {
      if (!confirm(`Revoke ${r.name} (${r.id})? Its streams end within seconds; this cannot be undone.`)) return;
      admin
        ?.call("DELETE", `/admin/keys/${encodeURIComponent(r.id)}`)
        .then(() => refresh())
        .catch((err: Error) => status(`Revoking failed: ${err.message}`, true));
    });
    const limit = (n: number | null, unit: string) => (n ? `${n} ${unit}` : null);
    const limits = [limit(r.max_streams, "streams"), limit(r.connects_per_minute, "connects/min"), limit(r.requests_per_minute, "requests/min")].filter(Boolean).join(", ") || "defaults";
    return h(
      "article",
      { class: `key card${r.revoked ? " revoked" : ""}${hot ? " hot" : ""}`, "data-id": r.id },
      h("h3", {}, r.name, " ", h("small", {}, r.id), r.revoked ? h("span", { class: "badge bad state" }, "revoked") : null, hot ? h("span", { class: "badge bad flag" }, "≥ 80 % of a limit") : null),
      h(
        "dl",
        {},
        h("dt", {}, "scopes"),
        h("dd", {}, scopes(r)),
        h("dt", {}, "origins"),
        h("dd", {}, r.origins?.join(", ") ?? "any"),
        h("dt", {}, "limits"),
        h("dd", {}, limits),
        h("dt", {}, "streams open"),
        h("dd", { class: "open" }, f ? String(f.streams_open) : "—"),
        h("dt", {}, "in use now"),
        h("dd", { class: "shares" }, f ? `streams ${percent(shares[0] ?? null)} · connects ${percent(shares[1] ?? null)} · requests ${percent(shares[2] ?? null)}` : "limits off"),
        h("dt", {}, "today"),
        h("dd", { class: "today" }, f ? `${f.connects} connects, ${(f.stream_seconds / 3600).toFixed(1)} stream hours, ${f.requests} requests, ${f.rejected} rejected` : "—"),
        h("dt", {}, "expires"),
        h("dd", {}, r.expires_at ?? "never"),
      ),
      h("div", { class: "actions" }, usageButton, r.revoked ? null : revoke),
      usage,
    );
  });
  // A usage chart open before the refresh stays open.
  const open = new Set([...document.querySelectorAll<HTMLElement>(".key .usage-chart:not([hidden])")].map((c) => c.closest<HTMLElement>(".key")?.dataset.id));
  document.getElementById("keys")?.replaceChildren(...rows);
  for (const row of rows) {
    const id = row.dataset.id;
    const usage = row.querySelector<HTMLElement>(".usage-chart");
    if (id && usage && open.has(id)) void showUsage(id, usage, true);
  }
}

async function showUsage(id: string, box: HTMLElement, keep = false): Promise<void> {
  if (!keep && !box.hidden) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  try {
    const body = await admin?.get<{ usage: DayUsage[] }>(`/admin/keys/${encodeURIComponent(id)}/usage?days=30`);
    if (!body) return;
    charts.get(`usage:${id}`)?.destroy();
    charts.delete(`usage:${id}`);
    draw(
      `usage:${id}`,
      box,
      usageColumns(body.usage) as uPlot.AlignedData,
      [
        { label: "connects", stroke: "#2563eb" },
        { label: "stream hours", stroke: "#16a34a" },
        { label: "requests", stroke: "#9333ea" },
        { label: "rejected", stroke: "#dc2626" },
      ],
      160,
    );
  } catch (err) {
    box.textContent = `Usage cannot be read: ${(err as Error).message}`;
  }
}

void start();
