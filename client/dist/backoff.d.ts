/** Longest wait between two connection attempts. */
export declare const MAX_DELAY_MS = 30000;
/**
 * How long to wait before connection attempt `attempt` (0 for the first
 * retry after a stream that was live): "full jitter" exponential backoff,
 * a uniform draw between nothing and `baseMs · 2^attempt` (at most
 * [`MAX_DELAY_MS`]), so clients that lost their streams at once come back
 * spread over that span rather than together. `baseMs` is the server's
 * `retry:`. A `Retry-After` (`retryAfterMs`) is a floor: the wait is that,
 * plus a draw over one `baseMs` so the clients it held back do not all
 * return in the same second.
 */
export declare function nextDelay(attempt: number, baseMs: number, random?: () => number, retryAfterMs?: number): number;
