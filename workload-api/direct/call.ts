import { Code, ConnectError } from '@connectrpc/connect';
import type { ServerHttp2Stream } from 'node:http2';
import { codeName, type WorkloadCallObserver } from '../metrics.js';
import { errorTrailers, MAX_REQUEST_BYTES, OK_TRAILERS, RESPONSE_HEADERS, tooLarge } from './wire.js';

// One function for every stream's 'error' event: the call's end is seen on 'close'.
const ignore = (): void => undefined;

/**
 * One gRPC call served straight on its HTTP/2 stream: response headers before the first message
 * (or the error), status in trailers, a deadline, and the caller going away (RST_STREAM, a closed
 * connection) seen as the stream's close. It ends exactly once, and tells the metrics how.
 */
export class DirectCall {
  observer: WorkloadCallObserver | undefined;
  /** Run once when the call ends, however it ends (drops the stream's subscriptions). */
  onEnd: (() => void) | undefined;
  private responded = false;
  private sentFirst = false;
  private ended = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly stream: ServerHttp2Stream, deadlineMs: number | undefined) {
    stream.on('error', ignore);
    stream.once('close', () => this.end(undefined, 'Canceled'));
    if (deadlineMs !== undefined) {
      this.timer = setTimeout(() => this.fail(new ConnectError('the operation timed out', Code.DeadlineExceeded)), deadlineMs);
      this.timer.unref();
    }
  }

  get isOpen(): boolean {
    return !this.ended;
  }

  /**
   * Collects the request body (a length-prefixed message or more), refusing it once it grows past
   * what one allowed message could be, then hands it on; nothing is handed on for an ended call.
   */
  readBody(then: (body: Buffer) => void): void {
    const chunks: Buffer[] = [];
    let size = 0;
    this.stream.on('data', (chunk: Buffer) => {
      if (size > MAX_REQUEST_BYTES + 5) return; // refused already; the rest is read and dropped
      size += chunk.length;
      if (size > MAX_REQUEST_BYTES + 5) this.fail(tooLarge());
      else chunks.push(chunk);
    });
    this.stream.once('end', () => {
      if (!this.ended) then(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    });
  }

  /** Writes one pre-framed message; false when the stream's buffer is full (wait for 'drain'). */
  send(frame: Buffer): boolean {
    // a stream the peer reset is destroyed before its 'close' event runs; respond() would throw on it
    if (this.ended || this.stream.destroyed || this.stream.closed) return true;
    this.respond();
    const more = this.stream.write(frame);
    if (!this.sentFirst) {
      this.sentFirst = true;
      this.observer?.firstMessage();
    }
    return more;
  }

  /** A unary call's answer: the message, then status OK. */
  reply(frame: Buffer): void {
    if (this.ended) return;
    this.send(frame);
    this.end(OK_TRAILERS, 'OK');
  }

  fail(err: unknown): void {
    this.end(errorTrailers(err), codeName(err));
  }

  private respond(): void {
    if (this.responded) return;
    this.responded = true;
    this.stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
  }

  private end(trailers: Readonly<Record<string, string>> | undefined, code: string): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    this.onEnd?.();
    this.observer?.ended(code);
    const stream = this.stream;
    if (trailers === undefined || stream.destroyed || stream.closed) return;
    this.respond();
    stream.once('wantTrailers', () => stream.sendTrailers(trailers));
    stream.end();
  }
}
