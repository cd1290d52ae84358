/** Longest wait between two connection attempts. */
export const MAX_DELAY_MS = 30_000;

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
export function nextDelay(
  attempt: number,
  baseMs: number,
  random: () => number = Math.random,
  retryAfterMs?: number,
): number {
  const base = Math.min(Math.max(baseMs, 100), MAX_DELAY_MS);
  const span = Math.min(MAX_DELAY_MS, base * 2 ** Math.min(Math.max(attempt, 0), 16));
  const unit = Math.min(Math.max(random(), 0), 1);
  if (retryAfterMs !== undefined && retryAfterMs > 0) return retryAfterMs + unit * base;
  return unit * span;
}
