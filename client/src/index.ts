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

import { MAX_DELAY_MS, nextDelay } from "./backoff.js";
import { SseParser, type SseEvent } from "./parser.js";
import { members, movedMember, streamPath } from "./streams.js";

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
  reset: [event: { stream: string }];
  /** A stream's opening is over: what follows is news. */
  live: [event: { stream: string; replayed: number }];
  viewers: [event: { stream: string; viewers: number }];
  state: [state: FeedState];
  error: [error: FeedError];
}

type Listener<K extends keyof FeedEvents> = (...args: FeedEvents[K]) => void;

/** Refusals that retrying cannot cure. */
const FATAL = ["bad_request", "missing_api_key", "invalid_api_key", "forbidden", "method_not_allowed"];
/** Round ids remembered per stream, so none is emitted twice. */
const SEEN = 2048;

export class GameFeed {
  readonly streams: string[];
  private current: FeedState = "connecting";
  private readonly listeners = new Map<string, Set<(...args: any[]) => void>>();
  private readonly path: string;
  private readonly fetcher: typeof fetch;
  private readonly heartbeatMs: number;
  private lastId = "";
  private retryMs = 3000;
  private attempt = 0;
  private token = "";
  private controller?: AbortController;
  private timer?: ReturnType<typeof setTimeout>;
  private watchdog?: ReturnType<typeof setInterval>;
  private lastByte = 0;
  private waiting = false;
  private liveStreams = new Set<string>();
  private seen = new Map<string, Set<number>>();
  private channel?: BroadcastChannel;
  /** This tab holds the shared connection (or shares none). */
  private leading = true;
  /** With `shareTabs`: the latest rounds and viewers of each stream. */
  private recent = new Map<string, { rounds: Array<[Round, RoundInfo]>; viewers?: number }>();
  /** The last connection renewed the token. */
  private renewed = false;
  private releaseLock?: () => void;
  private unhook: Array<() => void> = [];

  constructor(private readonly options: GameFeedOptions) {
    this.streams = members(options.games ?? [], options.types ?? []);
    if (this.streams.length === 0) throw new TypeError("GameFeed: name at least one game or type");
    this.path = streamPath(this.streams);
    this.fetcher = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.heartbeatMs = options.heartbeatMs ?? 15_000;
    this.lastId = this.restore();
    this.listenToPage();
    if (options.shareTabs && typeof navigator !== "undefined" && navigator.locks && typeof BroadcastChannel !== "undefined") {
      this.share();
    } else {
      queueMicrotask(() => this.connect());
    }
  }

  /** The feed's state. */
  get state(): FeedState {
    return this.current;
  }

  private closed(): boolean {
    return this.current === "closed";
  }

  /** Listens to an event; returns the function that stops listening. */
  on<K extends keyof FeedEvents>(name: K, listener: Listener<K>): () => void {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    set.add(listener);
    return () => this.off(name, listener);
  }

  off<K extends keyof FeedEvents>(name: K, listener: Listener<K>): void {
    this.listeners.get(name)?.delete(listener);
  }

  /** Closes the connection for good. */
  close(): void {
    if (this.closed()) return;
    this.stop();
    // The other tabs are not closed: one of them takes over.
    if (this.channel) this.leading = false;
    this.setState("closed");
    this.releaseLock?.();
    this.channel?.close();
    for (const undo of this.unhook) undo();
    this.unhook = [];
  }

  /** Calls this tab's listeners of `name`. */
  private notify(name: string, args: unknown[]): void {
    for (const listener of [...(this.listeners.get(name) ?? [])]) {
      try {
        listener(...args);
      } catch (err) {
        // A listener's bug must not break the feed.
        setTimeout(() => {
          throw err;
        });
      }
    }
  }

  private emit<K extends keyof FeedEvents>(name: K, ...args: FeedEvents[K]): void {
    this.notify(name, args);
    if (this.leading && this.channel) {
      this.remember(name, args);
      this.channel.postMessage({ name, args, id: this.lastId });
    }
  }

  private setState(state: FeedState): void {
    if (this.current === state) return;
    this.current = state;
    this.emit("state", state);
  }

  private stop(): void {
    clearTimeout(this.timer);
    clearInterval(this.watchdog);
    this.controller?.abort();
    this.controller = undefined;
    this.waiting = false;
  }

  private async credential(renew: boolean): Promise<string> {
    if (this.options.apiKey) return this.options.apiKey;
    if (!this.options.token) return "";
    if (renew || !this.token) this.token = await this.options.token();
    return this.token;
  }

  private async connect(renew = false): Promise<void> {
    if (this.closed()) return;
    this.stop();
    this.renewed = renew;
    const controller = (this.controller = new AbortController());
    this.liveStreams.clear();
    let ended: FeedError | undefined;
    try {
      const headers: Record<string, string> = { accept: "text/event-stream" };
      const credential = await this.credential(renew);
      if (credential) headers.authorization = "Bearer " + credential;
      let url = this.options.url.replace(/\/+$/, "") + this.path;
      if (this.lastId) headers["last-event-id"] = this.lastId;
      else if (this.options.rewind) url += (url.includes("?") ? "&" : "?") + "rewind=" + this.options.rewind;
      const response = await this.fetcher(url, { headers, signal: controller.signal, cache: "no-store" });
      if (!response.ok || !response.body) return this.refused(response);
      await this.read(response.body, controller);
    } catch (err) {
      if (controller.signal.aborted && this.controller !== controller) return;
      const message = controller.signal.aborted ? String(controller.signal.reason) : String((err as Error)?.message ?? err);
      ended = { code: "network", status: 0, message, fatal: false };
    }
    if (this.controller !== controller || this.closed()) return;
    // A stream that was live and ended starts the backoff over.
    if (this.state === "live") this.attempt = 0;
    if (ended) this.emit("error", ended);
    this.retry();
  }

  private async read(body: ReadableStream<Uint8Array>, controller: AbortController): Promise<void> {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    const parser = new SseParser(
      (event) => this.dispatch(event),
      (ms) => (this.retryMs = ms),
    );
    this.lastByte = Date.now();
    this.watchdog = setInterval(() => {
      if (Date.now() - this.lastByte > 2.5 * this.heartbeatMs) controller.abort("no byte for 2.5 heartbeats");
    }, Math.max(this.heartbeatMs / 4, 250));
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      this.lastByte = Date.now();
      parser.push(decoder.decode(value, { stream: true }));
    }
  }

  private dispatch(event: SseEvent): void {
    let data: any;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    const previous = this.lastId;
    if (event.id) {
      this.lastId = event.id;
      this.save();
    }
    const stream =
      this.streams.length === 1 ? this.streams[0] : (data?.stream ?? movedMember(previous, event.id));
    if (!stream) return;
    switch (event.type) {
      case "initial":
      case "message": {
        const seen = this.seen.get(stream) ?? new Set<number>();
        this.seen.set(stream, seen);
        if (seen.has(data.round_id)) return;
        seen.add(data.round_id);
        if (seen.size > SEEN) seen.delete(seen.values().next().value as number);
        this.emit("round", data, { stream, live: this.liveStreams.has(stream), id: event.id });
        return;
      }
      case "update":
        this.emit("update", data, { stream, live: this.liveStreams.has(stream), id: event.id });
        return;
      case "reset":
        this.seen.delete(stream);
        this.emit("reset", { stream });
        return;
      case "live":
        this.liveStreams.add(stream);
        this.emit("live", { stream, replayed: data.replayed });
        if (this.streams.every((s) => this.liveStreams.has(s))) {
          this.attempt = 0;
          this.setState("live");
        }
        return;
      case "viewers":
        this.emit("viewers", { stream, viewers: data.viewers });
        return;
    }
  }

  private async refused(response: Response): Promise<void> {
    let code = "http_" + response.status;
    let message = response.statusText;
    try {
      const body = await response.json();
      code = body?.error?.code ?? code;
      message = body?.error?.message ?? message;
    } catch {
      // Not JSON: keep the status.
    }
    const after = Number(response.headers.get("retry-after"));
    const retryAfter = Number.isFinite(after) && after > 0 ? after : undefined;
    const renew = code === "invalid_token" && !!this.options.token;
    const fatal = FATAL.includes(code) || (code === "invalid_token" && !renew);
    this.emit("error", { code, status: response.status, message, retryAfter, fatal });
    if (fatal) return this.close();
    // A token that expired: a new one at once, unless the last was new.
    if (renew && !this.renewed) return this.connect(true);
    this.retry(retryAfter, renew);
  }

  private retry(retryAfter?: number, renew = false): void {
    if (this.closed()) return;
    clearInterval(this.watchdog);
    this.setState("reconnecting");
    const delay = nextDelay(this.attempt++, this.retryMs, Math.random, retryAfter && retryAfter * 1000);
    this.waiting = true;
    this.timer = setTimeout(() => {
      this.waiting = false;
      this.connect(renew);
    }, Math.min(delay, MAX_DELAY_MS + (retryAfter ?? 0) * 1000));
  }

  /** A page coming back (online, visible, restored): check at once. */
  private check(): void {
    if (this.closed()) return;
    if (this.waiting) return void this.connect();
    if (this.controller && Date.now() - this.lastByte > this.heartbeatMs * 1.2) this.connect();
  }

  private listenToPage(): void {
    if (typeof window === "undefined" || typeof document === "undefined") return;
    const check = () => {
      if (document.visibilityState !== "hidden") this.check();
    };
    // The browser lost its network: the stream is gone or going; wait for
    // `online` rather than for the watchdog.
    const offline = () => this.controller?.abort("the browser went offline");
    for (const [target, name, listener] of [
      [window, "online", check],
      [window, "pageshow", check],
      [document, "visibilitychange", check],
      [window, "offline", offline],
    ] as const) {
      target.addEventListener(name, listener);
      this.unhook.push(() => target.removeEventListener(name, listener));
    }
  }

  private storageKey(): string | undefined {
    return this.options.persist ? "gamefeed:" + this.options.persist : undefined;
  }

  private restore(): string {
    const key = this.storageKey();
    try {
      const saved = key && JSON.parse(sessionStorage.getItem(key) ?? "null");
      return saved?.path === this.path && typeof saved.id === "string" ? saved.id : "";
    } catch {
      return "";
    }
  }

  private save(): void {
    const key = this.storageKey();
    if (!key) return;
    try {
      sessionStorage.setItem(key, JSON.stringify({ path: this.path, id: this.lastId }));
    } catch {
      // Storage full or denied: the feed still resumes within the page.
    }
  }

  /**
   * One connection for every tab of this browser: the tab holding the lock
   * connects and forwards what it gets; the others listen, and one of them
   * takes over (resuming from the last id forwarded) when it goes. A tab
   * joining says hello and is told the state, the latest rounds (as many as
   * `rewind`, at least one) and viewers of each stream.
   */
  private share(): void {
    const name = "gamefeed:" + this.options.url + this.path;
    const channel = (this.channel = new BroadcastChannel(name));
    const me = Math.random().toString(36).slice(2);
    channel.onmessage = ({ data }: MessageEvent) => {
      if (!data || typeof data !== "object") return;
      if (this.leading) {
        if (data.hello) channel.postMessage({ to: data.hello, state: this.current, recent: [...this.recent], id: this.lastId });
        return;
      }
      if (data.to !== undefined && data.to !== me) return;
      if (typeof data.id === "string" && data.id) {
        this.lastId = data.id;
        this.save();
      }
      if (data.to === me) {
        for (const [stream, { rounds, viewers }] of data.recent) {
          for (const [round, info] of rounds) this.deliver("round", [round, { ...info, live: false }]);
          if (viewers !== undefined) this.deliver("viewers", [{ stream, viewers }]);
        }
        return this.setLocalState(data.state);
      }
      if (data.name === "state") return this.setLocalState(data.args[0]);
      this.deliver(data.name, data.args);
    };
    const released = new Promise<void>((resolve) => (this.releaseLock = resolve));
    this.leading = false;
    channel.postMessage({ hello: me });
    navigator.locks.request(name, () => {
      if (this.closed()) return;
      // The leader now: it connects, resuming from the last id forwarded.
      this.leading = true;
      void this.connect();
      return released;
    });
  }

  /** A follower hands on what the leader forwarded. */
  private deliver(name: string, args: any[]): void {
    this.remember(name, args);
    this.notify(name, args);
  }

  /** What a tab joining the shared connection is told first. */
  private remember(name: string, args: any[]): void {
    if (!this.channel) return;
    const stream: string | undefined = name === "round" ? args[1]?.stream : args[0]?.stream;
    if (!stream) return;
    const entry = this.recent.get(stream) ?? { rounds: [] };
    this.recent.set(stream, entry);
    if (name === "round") {
      entry.rounds.push([args[0], args[1]]);
      entry.rounds.splice(0, entry.rounds.length - Math.max(1, this.options.rewind ?? 1));
    } else if (name === "viewers") {
      entry.viewers = args[0].viewers;
    } else if (name === "reset") {
      entry.rounds = [];
    }
  }

  private setLocalState(state: FeedState): void {
    if (this.current === state || this.current === "closed") return;
    this.current = state;
    this.notify("state", [state]);
  }
}
