/**
 * A `text/event-stream` parser following the WHATWG HTML standard
 * ("Parsing an event stream"): lines end with CRLF, LF or CR (a CR at the
 * end of one chunk and an LF at the start of the next are one line end), a
 * leading byte order mark is dropped, lines starting with `:` are comments,
 * `data:` lines are joined with LF, an `id:` containing NUL is ignored, and
 * `retry:` takes ASCII digits only. Fed decoded text (a `TextDecoder` in
 * streaming mode) in chunks of any size.
 *
 * Written here because the package has no runtime dependencies, and the
 * parsers on npm either need `EventSource` or bring their own transport.
 */

/** One dispatched event. */
export interface SseEvent {
  /** The `event:` name, `message` when none was given. */
  type: string;
  /** The `data:` lines joined with LF. */
  data: string;
  /** The last event id in force (the stream's, not only this frame's). */
  id: string;
}

export class SseParser {
  private rest = "";
  private data = "";
  private type = "";
  private idBuffer = "";
  private dataSeen = false;
  private afterCr = false;
  private started = false;
  /** The last event id in force. */
  lastId = "";

  constructor(
    private readonly onEvent: (event: SseEvent) => void,
    private readonly onRetry: (ms: number) => void = () => {},
  ) {}

  /** Feeds a chunk of decoded text. */
  push(chunk: string): void {
    if (!this.started && chunk.length > 0) {
      this.started = true;
      if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
    }
    if (this.afterCr && chunk.charCodeAt(0) === 10) chunk = chunk.slice(1);
    if (chunk.length > 0) this.afterCr = false;
    const text = this.rest + chunk;
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const line = text.slice(start, i);
      if (c === 13) {
        if (i + 1 === text.length) this.afterCr = true;
        else if (text.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
      this.line(line);
    }
    this.rest = text.slice(start);
  }

  private line(line: string): void {
    if (line === "") return this.dispatch();
    if (line.charCodeAt(0) === 58 /* : */) return;
    const colon = line.indexOf(":");
    let field = line;
    let value = "";
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + (line.charCodeAt(colon + 1) === 32 ? 2 : 1));
    }
    switch (field) {
      case "event":
        this.type = value;
        break;
      case "data":
        this.data += this.dataSeen ? "\n" + value : value;
        this.dataSeen = true;
        break;
      case "id":
        if (!value.includes("\0")) this.idBuffer = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.onRetry(Number(value));
        break;
    }
  }

  private dispatch(): void {
    this.lastId = this.idBuffer;
    const seen = this.dataSeen;
    const event = { type: this.type || "message", data: this.data, id: this.lastId };
    this.data = "";
    this.type = "";
    this.dataSeen = false;
    if (seen) this.onEvent(event);
  }
}
