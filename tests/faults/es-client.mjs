// SSE clients for the fault matrix (scripts/faults.sh): one EventSource of
// the npm `eventsource` package (a spec-following implementation, not ours)
// per URL given as a JSON array in argv[2]. Every event and every change of
// the connection is printed as one JSON line: {"c": index, "t": type,
// "id": lastEventId, "d": data}. EventSource reconnects by itself, with
// Last-Event-ID, after the server's `retry:`.
import { EventSource } from "eventsource";

const urls = JSON.parse(process.argv[2] ?? "[]");
const say = (line) => process.stdout.write(JSON.stringify(line) + "\n");

function open(c, url) {
  const es = new EventSource(url);
  es.onopen = () => say({ c, t: "open", id: "", d: "" });
  for (const t of ["message", "initial", "update", "reset"]) {
    es.addEventListener(t, (e) => say({ c, t, id: e.lastEventId, d: e.data }));
  }
  es.onerror = (e) => {
    if (es.readyState === EventSource.CLOSED) {
      // Failed for good (a non-200 answer): report it, and open a new one as
      // an application would. Its first event is an `initial`, not a resume.
      say({ c, t: "closed", id: "", d: String(e?.message ?? e?.code ?? "") });
      setTimeout(() => open(c, url), 3000);
    } else {
      say({ c, t: "error", id: "", d: String(e?.message ?? "") });
    }
  };
}

urls.forEach((url, c) => open(c, url));
