// A small page of the React hook, bundled by client/test/browser.mjs with
// esbuild: it shows the latest round and the viewer count.
import { createRoot } from "react-dom/client";

import { useGameFeed } from "@gamefeed/client/react";

const params = new URLSearchParams(location.search);

function Latest() {
  const { latest, rounds, viewers, state } = useGameFeed({
    url: params.get("feed") ?? "",
    games: ["crash"],
    apiKey: params.get("key") ?? "",
    rewind: 3,
    keep: 5,
    heartbeatMs: 1000,
  });
  return (
    <main>
      <p id="state">{state}</p>
      <p id="latest">{latest ? latest.round_id : "none"}</p>
      <p id="viewers">{viewers ?? "unknown"}</p>
      <ol id="rounds">
        {rounds.map((r) => (
          <li key={r.round_id}>{r.round_id}</li>
        ))}
      </ol>
    </main>
  );
}

createRoot(document.getElementById("root")!).render(<Latest />);
