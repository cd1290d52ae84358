/** The streams a feed carries, how to ask for them, and how its ids read. */

/**
 * Member stream names (`game:<slug>`, `type:<type>`), games then types,
 * each sorted, repeats dropped: the server's order.
 */
export function members(games: readonly string[], types: readonly string[]): string[] {
  const clean = (names: readonly string[]) =>
    [...new Set(names.map((n) => n.trim()).filter((n) => n !== ""))].sort();
  return [...clean(games).map((g) => "game:" + g), ...clean(types).map((t) => "type:" + t)];
}

/**
 * The stream route for `streams`: one game or type has its own route,
 * several share one multiplexed connection.
 */
export function streamPath(streams: readonly string[]): string {
  const names = (prefix: string) =>
    streams.filter((s) => s.startsWith(prefix)).map((s) => s.slice(prefix.length));
  const games = names("game:");
  const types = names("type:");
  if (streams.length === 1 && games.length === 1) return "/sse/" + encodeURIComponent(games[0]);
  if (streams.length === 1 && types.length === 1) return "/sse/type/" + encodeURIComponent(types[0]);
  const query = new URLSearchParams();
  if (games.length) query.set("games", games.join(","));
  if (types.length) query.set("types", types.join(","));
  return "/sse?" + query.toString();
}

/** A multiplexed stream's `id:`, `g:crash:12,t:dice:5.3`, as stream → position. */
export function parseCursor(id: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of id.split(",")) {
    const first = part.indexOf(":");
    const last = part.lastIndexOf(":");
    if (first <= 0 || last <= first) continue;
    const kind = part.slice(0, first) === "g" ? "game:" : "type:";
    out.set(kind + part.slice(first + 1, last), part.slice(last + 1));
  }
  return out;
}

/** The member whose position moved from cursor `before` to cursor `after`. */
export function movedMember(before: string, after: string): string | undefined {
  const old = parseCursor(before);
  for (const [stream, position] of parseCursor(after)) {
    if (old.get(stream) !== position) return stream;
  }
  return undefined;
}
