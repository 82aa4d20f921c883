/**
 * What a process opened, closed in reverse order: the last thing opened depends on the earlier ones
 * (a listener on the services, the services on the pool), so stop accepting comes first and the
 * pool last. A start-up that fails halfway closes exactly what it had opened, so the process can
 * exit instead of hanging on a worker, a LISTEN connection or a bound port.
 */
export class Resources {
  private readonly stack: { readonly name: string; readonly close: () => unknown }[] = [];

  /** Registers how to release something just opened. */
  defer(name: string, close: () => unknown): void {
    this.stack.push({ name, close });
  }

  /** Closes everything registered, newest first, each once; a failure is reported and the rest still close. */
  async close(onError?: (name: string, err: unknown) => void): Promise<void> {
    for (let next = this.stack.pop(); next; next = this.stack.pop()) {
      try {
        await next.close();
      } catch (err) {
        onError?.(next.name, err);
      }
    }
  }
}
