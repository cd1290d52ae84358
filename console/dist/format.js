// console/src/format.ts
function share(used, limit) {
  return limit > 0 ? used / limit : null;
}
var FLAG_AT = 0.8;
function flagged(shares) {
  return shares.some((s) => s !== null && s >= FLAG_AT);
}
function percent(s) {
  return s === null ? "no limit" : `${Math.round(s * 100)} %`;
}
function duration(seconds) {
  if (seconds === null || seconds === void 0 || !Number.isFinite(seconds)) return "\u2014";
  if (seconds < 1) return `${Math.round(seconds * 1e3)} ms`;
  return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
}
function perMinute(rate) {
  if (!Number.isFinite(rate) || rate <= 0) return "0";
  if (rate >= 10) return String(Math.round(rate));
  return rate.toFixed(rate >= 1 ? 1 : 2);
}
function list(text) {
  const items = text.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  return items.length ? items : void 0;
}
function keyRequest(form) {
  const name = form.name.trim();
  if (!name) return { error: "a name is required" };
  const body = { name, test: form.test };
  const scopes = [
    ["games", form.games],
    ["types", form.types],
    ["origins", form.origins]
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
  const numbers = [
    ["max_streams", form.maxStreams, "max streams"],
    ["connects_per_minute", form.connectsPerMinute, "connects per minute"],
    ["requests_per_minute", form.requestsPerMinute, "requests per minute"]
  ];
  for (const [field, text, label] of numbers) {
    if (!text.trim()) continue;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0 || n > 4294967295) return { error: `${label} must be a whole number, 0 or more` };
    body[field] = n;
  }
  return { body };
}
function usageColumns(usage) {
  const days = [...usage].reverse();
  return [
    days.map((d) => Date.parse(`${d.day}T00:00:00Z`) / 1e3),
    days.map((d) => d.connects),
    days.map((d) => d.stream_seconds / 3600),
    days.map((d) => d.requests),
    days.map((d) => d.rejected)
  ];
}
function bare(stream) {
  return stream.slice(stream.indexOf(":") + 1);
}
export {
  FLAG_AT,
  bare,
  duration,
  flagged,
  keyRequest,
  list,
  perMinute,
  percent,
  share,
  usageColumns
};
