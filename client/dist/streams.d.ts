/** The streams a feed carries, how to ask for them, and how its ids read. */
/**
 * Member stream names (`game:<slug>`, `type:<type>`), games then types,
 * each sorted, repeats dropped: the server's order.
 */
export declare function members(games: readonly string[], types: readonly string[]): string[];
/**
 * The stream route for `streams`: one game or type has its own route,
 * several share one multiplexed connection.
 */
export declare function streamPath(streams: readonly string[]): string;
/** A multiplexed stream's `id:`, `g:crash:12,t:dice:5.3`, as stream → position. */
export declare function parseCursor(id: string): Map<string, string>;
/** The member whose position moved from cursor `before` to cursor `after`. */
export declare function movedMember(before: string, after: string): string | undefined;
