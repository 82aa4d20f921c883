/**
 * Whether a failure that repeats on every retry deserves another log line: the first one, one
 * with a different key (say the errno changed from ENOSPC to EROFS), or the same one again after
 * `intervalMs`. A full disk retried every second then logs once a minute, not sixty times.
 */
export class RepeatGate {
  private last: { key: string; at: number } | undefined;

  constructor(private readonly intervalMs = 60_000) {}

  /** True when this occurrence should be logged (and remembers it as logged). */
  shouldLog(key: string, nowMs: number): boolean {
    if (this.last && this.last.key === key && nowMs - this.last.at < this.intervalMs) return false;
    this.last = { key, at: nowMs };
    return true;
  }

  /** The failure is over: the next one is news again. */
  reset(): void {
    this.last = undefined;
  }
}
