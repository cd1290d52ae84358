/**
 * `@gamefeed/client`: the browser (and Node) client of the gamefeed stream.
 *
 * One `GameFeed` holds one connection to the stream of its games and types
 * (several streams share one multiplexed connection). It sends the
 * credential in `Authorization` and the resume point in `Last-Event-ID`,
 * never in the URL; reconnects with jittered exponential backoff, honouring
 * `Retry-After`; asks `token()` again when a browser token expired; stops
 * on a refusal that retrying cannot cure; notices a connection that went
 * silent; and never emits a round twice, across reconnects and (with
 * `persist`) page reloads. The wire contract is docs/protocol.md.
 */
export { MAX_DELAY_MS, nextDelay } from "./backoff.js";
export { SseParser, type SseEvent } from "./parser.js";
export { members, movedMember, parseCursor, streamPath } from "./streams.js";
/** A finished round, as docs/protocol.md describes it. */
export interface Round {
    round_id: number;
    game_id: number;
    game_slug: string;
    game_type: string;
    finished_at: string;
    /** The game's own fields, as a JSON text. */
    extras: string;
    /** When the round was committed (ms since the epoch). */
    timestamp: number;
}
/** Where a round came from. */
export interface RoundInfo {
    /** Its stream: `game:<slug>` or `type:<type>`. */
    stream: string;
    /** `false` for the opening (initial round, rewind, a resume's backlog). */
    live: boolean;
    /** Its position in the stream (the `id:`). */
    id: string;
}
export type FeedState = "connecting" | "live" | "reconnecting" | "closed";
/** A refusal or a failure, as the server's JSON error says it. */
export interface FeedError {
    /** The server's `code` (`rate_limited`, `invalid_token`, …), or `network`. */
    code: string;
    /** The HTTP status; 0 when no answer came. */
    status: number;
    message: string;
    /** Seconds the server asked to wait (`Retry-After`). */
    retryAfter?: number;
    /** The feed stopped: retrying cannot cure this (a bad key, say). */
    fatal: boolean;
}
export interface GameFeedOptions {
    /** The feed's origin, `https://feed.example.com`. */
    url: string;
    games?: string[];
    types?: string[];
    /** Returns a browser token (`st_…`); called again when one expired. */
    token?: () => string | Promise<string>;
    /** An API key, for servers and trusted pages. */
    apiKey?: string;
    /** Open with the last N rounds of each stream (1–100) instead of the latest. */
    rewind?: number;
    /** Keep the resume point in `sessionStorage` under this name. */
    persist?: string;
    /** The tabs of one browser share one connection (Web Locks and BroadcastChannel). */
    shareTabs?: boolean;
    /** The server's heartbeat (15 s): silence for 2.5 of them means a dead connection. */
    heartbeatMs?: number;
    /** For tests and unusual runtimes. */
    fetch?: typeof fetch;
}
export interface FeedEvents {
    round: [round: Round, info: RoundInfo];
    update: [round: Round, info: RoundInfo];
    /** The resume point was gone: rounds were missed; reload what you show. */
    reset: [event: {
        stream: string;
    }];
    /** A stream's opening is over: what follows is news. */
    live: [event: {
        stream: string;
        replayed: number;
    }];
    viewers: [event: {
        stream: string;
        viewers: number;
    }];
    state: [state: FeedState];
    error: [error: FeedError];
}
type Listener<K extends keyof FeedEvents> = (...args: FeedEvents[K]) => void;
export declare class GameFeed {
    private readonly options;
    readonly streams: string[];
    private current;
    private readonly listeners;
    private readonly path;
    private readonly fetcher;
    private readonly heartbeatMs;
    private lastId;
    private retryMs;
    private attempt;
    private token;
    private controller?;
    private timer?;
    private watchdog?;
    private lastByte;
    private waiting;
    private liveStreams;
    private seen;
    private channel?;
    /** This tab holds the shared connection (or shares none). */
    private leading;
    /** With `shareTabs`: the latest rounds and viewers of each stream. */
    private recent;
    /** The last connection renewed the token. */
    private renewed;
    private releaseLock?;
    private unhook;
    constructor(options: GameFeedOptions);
    /** The feed's state. */
    get state(): FeedState;
    private closed;
    /** Listens to an event; returns the function that stops listening. */
    on<K extends keyof FeedEvents>(name: K, listener: Listener<K>): () => void;
    off<K extends keyof FeedEvents>(name: K, listener: Listener<K>): void;
    /** Closes the connection for good. */
    close(): void;
    /** Calls this tab's listeners of `name`. */
    private notify;
    private emit;
    private setState;
    private stop;
    private credential;
    private connect;
    private read;
    private dispatch;
    private refused;
    private retry;
    /** A page coming back (online, visible, restored): check at once. */
    private check;
    private listenToPage;
    private storageKey;
    private restore;
    private save;
    /**
     * One connection for every tab of this browser: the tab holding the lock
     * connects and forwards what it gets; the others listen, and one of them
     * takes over (resuming from the last id forwarded) when it goes. A tab
     * joining says hello and is told the state, the latest rounds (as many as
     * `rewind`, at least one) and viewers of each stream.
     */
    private share;
    /** A follower hands on what the leader forwarded. */
    private deliver;
    /** What a tab joining the shared connection is told first. */
    private remember;
    private setLocalState;
}
