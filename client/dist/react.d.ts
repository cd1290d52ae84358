/**
 * `@gamefeed/client/react`: the feed as a React hook. React is a peer
 * dependency; the feed itself comes from the core package.
 */
import { type FeedError, type FeedState, type GameFeedOptions, type Round } from "./index.js";
export interface UseGameFeedOptions extends GameFeedOptions {
    /** How many rounds `rounds` keeps, newest first (20). */
    keep?: number;
}
export interface GameFeedView {
    /** The newest round by arrival. */
    latest?: Round;
    /** The last `keep` rounds, newest first; corrections applied. */
    rounds: Round[];
    /** Clients watching: the sum over the feed's streams. */
    viewers?: number;
    /** Clients watching each stream. */
    viewersByStream: Record<string, number>;
    state: FeedState;
    /** The last error; cleared once the feed is live again. */
    error?: FeedError;
}
/**
 * Opens a feed while the component is mounted. The feed is made again when
 * its connection options change (`url`, games, types, credential, rewind,
 * persist), not when a new options object says the same.
 */
export declare function useGameFeed(options: UseGameFeedOptions): GameFeedView;
