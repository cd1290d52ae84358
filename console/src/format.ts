// The console's arithmetic and wording, pure (unit-tested in
// console/test/unit.test.mjs against the built bundle's twin, format.js).

/** Share of a limit in use, 0–1+; `null` when the limit is 0 (none). */
export function share(used: number, limit: number): number | null {
  return limit > 0 ? used / limit : null;
}

/** A key is flagged when any share of its limits is at 80 % or more. */
export const FLAG_AT = 0.8;

export function flagged(shares: Array<number | null>): boolean {
  return shares.some((s) => s !== null && s >= FLAG_AT);
}

/** `62 %`, or `no limit`. */
export function percent(s: number | null): string {
  return s === null ? "no limit" : `${Math.round(s * 100)} %`;
}

/** Seconds as `12 ms`, `1.4 s`, or `—` when unknown. */
export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
}

/** A rate per minute with the digits that matter: `42`, `3.5`, `0.05`. */
export function perMinute(rate: number): string {
  if (!Number.isFinite(rate) || rate <= 0) return "0";
  if (rate >= 10) return String(Math.round(rate));
  return rate.toFixed(rate >= 1 ? 1 : 2);
}

/** `a, b ,c` → `["a","b","c"]`; empty → `undefined` (the field is left out). */
export function list(text: string): string[] | undefined {
  const items = text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  return items.length ? items : undefined;
}

/** The fields of the create form, as typed. */
export interface KeyForm {
  name: string;
  games: string;
  types: string;
  origins: string;
  /** `datetime-local`'s value (local time), or empty. */
  expires: string;
  maxStreams: string;
  connectsPerMinute: string;
  requestsPerMinute: string;
  test: boolean;
}

/** The body of `POST /admin/keys` from the form, or the first problem. */
export function keyRequest(form: KeyForm): { body: Record<string, unknown> } | { error: string } {
  const name = form.name.trim();
  if (!name) return { error: "a name is required" };
  const body: Record<string, unknown> = { name, test: form.test };
  const scopes: Array<[string, string]> = [
    ["games", form.games],
    ["types", form.types],
    ["origins", form.origins],
  ];
  for (const [field, text] of scopes) {
    const items = list(text);
    if (items) body[field] = items;
  }
  if (form.expires) {
    const at = new Date(form.expires);
    if (Number.isNaN(at.getTime())) return { error: "the expiry is not a date" };
    body.expires_at = at.toISOString();
  }
  const numbers: Array<[string, string, string]> = [
    ["max_streams", form.maxStreams, "max streams"],
    ["connects_per_minute", form.connectsPerMinute, "connects per minute"],
    ["requests_per_minute", form.requestsPerMinute, "requests per minute"],
  ];
  for (const [field, text, label] of numbers) {
    if (!text.trim()) continue;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0 || n > 4294967295) return { error: `${label} must be a whole number, 0 or more` };
    body[field] = n;
  }
  return { body };
}

/** One day of `GET /admin/keys/:id/usage`. */
export interface DayUsage {
  day: string;
  connects: number;
  rejected: number;
  stream_seconds: number;
  requests: number;
}

/** Usage (newest first) as chart columns, oldest first: day starts (Unix
 * seconds), connects, stream hours, requests, rejected. */
export function usageColumns(usage: DayUsage[]): number[][] {
  const days = [...usage].reverse();
  return [
    days.map((d) => Date.parse(`${d.day}T00:00:00Z`) / 1000),
    days.map((d) => d.connects),
    days.map((d) => d.stream_seconds / 3600),
    days.map((d) => d.requests),
    days.map((d) => d.rejected),
  ];
}

/** A stream's name without its kind: `game:crash` → `crash`. */
export function bare(stream: string): string {
  return stream.slice(stream.indexOf(":") + 1);
}
