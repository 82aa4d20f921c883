/**
 * What both xDS variants share: the nonce of the last response sent, and NACK reporting. A NACK
 * is a request with error_detail answering that nonce; it is reported once per response, however
 * often a client repeats itself.
 */
export abstract class XdsStream {
  protected lastNonce: string | undefined;
  private nackedNonce: string | undefined;

  constructor(private readonly nonce: () => string) {}

  /** True the first time a request NACKs the last response sent. */
  firstNack(req: { responseNonce: string; errorDetail?: unknown }): boolean {
    if (!req.errorDetail || this.lastNonce === undefined || req.responseNonce !== this.lastNonce || this.nackedNonce === this.lastNonce) return false;
    this.nackedNonce = this.lastNonce;
    return true;
  }

  /** A fresh nonce for the response about to be sent. */
  protected nextNonce(): string {
    this.lastNonce = this.nonce();
    return this.lastNonce;
  }
}
