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
export declare class SseParser {
    private readonly onEvent;
    private readonly onRetry;
    private rest;
    private data;
    private type;
    private idBuffer;
    private dataSeen;
    private afterCr;
    private started;
    /** The last event id in force. */
    lastId: string;
    constructor(onEvent: (event: SseEvent) => void, onRetry?: (ms: number) => void);
    /** Feeds a chunk of decoded text. */
    push(chunk: string): void;
    private line;
    private dispatch;
}
