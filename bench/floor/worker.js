// The smallest Worker with our fan-out's shape, for the runtime's floor: N
// open SSE responses in one isolate, and a push that hands the same bytes
// to every one of them, as the feed does. No auth, no objects, no wasm.
// `?mode=` picks the body: `readable` (a JS ReadableStream fed by enqueue,
// what the Worker uses), `bytes` (a JS byte stream: each enqueue takes its
// own copy, the buffer is transferred), `identity` (workerd's native
// IdentityTransformStream, written through a writer: refused from another
// request's context, so a shared feed cannot use it).
const clients = new Set();
const encoder = new TextEncoder();

export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/push") {
      const frames = new Uint8Array(await request.arrayBuffer());
      for (const client of clients) client.send(frames);
      return new Response(String(clients.size));
    }
    if (url.pathname !== "/sse") return new Response("not found", { status: 404 });
    const headers = { "content-type": "text/event-stream", "cache-control": "no-cache" };
    const client = {};
    // As in the Worker, a timer per client keeps its request alive while
    // another request writes to its body.
    const timer = setInterval(() => client.send(encoder.encode(`: heartbeat ${Date.now()}\n\n`)), 15000);
    const gone = () => {
      clients.delete(client);
      clearInterval(timer);
    };
    let body;
    if (url.searchParams.get("mode") === "identity") {
      const { readable, writable } = new IdentityTransformStream();
      const writer = writable.getWriter();
      client.send = (bytes) => writer.write(bytes).catch(gone);
      body = readable;
    } else if (url.searchParams.get("mode") === "bytes") {
      let controller;
      body = new ReadableStream({
        type: "bytes",
        start(c) {
          controller = c;
        },
        cancel: gone,
      });
      client.send = (bytes) => {
        try {
          controller.enqueue(bytes.slice());
        } catch {
          gone();
        }
      };
    } else {
      let controller;
      body = new ReadableStream({
        start(c) {
          controller = c;
        },
        cancel: gone,
      });
      client.send = (bytes) => {
        try {
          controller.enqueue(bytes);
        } catch {
          gone();
        }
      };
    }
    request.signal.addEventListener("abort", gone);
    clients.add(client);
    client.send(encoder.encode("retry: 3000\n\n"));
    return new Response(body, { headers });
  },
};
