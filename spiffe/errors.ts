/** Errors raised by the SPIFFE layer. Independent of Cairn's catalogue: callers map them. */
export type SpiffeErrorCode =
  | 'invalid_spiffe_id'
  | 'invalid_trust_domain'
  | 'invalid_bundle'
  | 'invalid_x509_svid'
  | 'invalid_jwt_svid';

export class SpiffeError extends Error {
  override readonly name = 'SpiffeError';
  constructor(
    readonly code: SpiffeErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
