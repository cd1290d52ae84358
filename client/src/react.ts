/**
 * `@gamefeed/client/react`: the feed as a React hook. React is a peer
 * dependency; the feed itself comes from the core package.
 */

import { useEffect, useRef, useState } from "react";

import { GameFeed, type FeedError, type FeedState, type GameFeedOptions, type Round } from "./index.js";

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
export function useGameFeed(options: UseGameFeedOptions): GameFeedView {
  const keep = options.keep ?? 20;
  const [view, setView] = useState<GameFeedView>({ rounds: [], viewersByStream: {}, state: "connecting" });
  const latestOptions = useRef(options);
  latestOptions.current = options;
  const identity = JSON.stringify([
    options.url,
    options.games,
    options.types,
    options.apiKey,
    options.rewind,
    options.persist,
    options.shareTabs,
    options.heartbeatMs,
  ]);
  useEffect(() => {
    const current = latestOptions.current;
    // The token function may change identity on every render: call the latest.
    const token = current.token && (() => latestOptions.current.token!());
    const feed = new GameFeed({ ...current, token });
    setView({ rounds: [], viewersByStream: {}, state: feed.state });
    const undo = [
      feed.on("round", (round) =>
        setView((v) => {
          const rounds = [round, ...v.rounds.filter((r) => r.round_id !== round.round_id)].slice(0, keep);
          return { ...v, latest: round, rounds };
        }),
      ),
      feed.on("update", (round) =>
        setView((v) => ({
          ...v,
          latest: v.latest?.round_id === round.round_id ? round : v.latest,
          rounds: v.rounds.map((r) => (r.round_id === round.round_id ? round : r)),
        })),
      ),
      feed.on("reset", ({ stream }) =>
        setView((v) => ({
          ...v,
          rounds: v.rounds.filter((r) => !inStream(r, stream)),
          latest: v.latest && inStream(v.latest, stream) ? undefined : v.latest,
        })),
      ),
      feed.on("viewers", ({ stream, viewers }) =>
        setView((v) => {
          const viewersByStream = { ...v.viewersByStream, [stream]: viewers };
          const total = Object.values(viewersByStream).reduce((a, b) => a + b, 0);
          return { ...v, viewersByStream, viewers: total };
        }),
      ),
      feed.on("state", (state) =>
        setView((v) => ({ ...v, state, error: state === "live" ? undefined : v.error })),
      ),
      feed.on("error", (error) => setView((v) => ({ ...v, error }))),
    ];
    return () => {
      for (const off of undo) off();
      feed.close();
    };
  }, [identity, keep]);
  return view;
}

function inStream(round: Round, stream: string): boolean {
  return stream === "game:" + round.game_slug || stream === "type:" + round.game_type;
}
