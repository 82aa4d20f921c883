import { Type, type Static } from 'typebox';

export const ErrorBody = Type.Object(
  {
    code: Type.String({ description: 'stable machine-readable error code' }),
    message: Type.String({ description: 'a human sentence' }),
    details: Type.Optional(Type.Object({}, { additionalProperties: true })),
  },
  { $id: 'ErrorBody' },
);
export type ErrorBody = Static<typeof ErrorBody>;

export const PageQuery = {
  pageSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
  pageToken: Type.Optional(Type.String({ maxLength: 4096 })),
};

export const SpiffeIdString = Type.String({ minLength: 1, maxLength: 2048, description: 'a SPIFFE ID, spiffe://<trust-domain>/<path>' });
export const TrustDomainName = Type.String({ minLength: 1, maxLength: 255, description: 'a trust domain name, e.g. example.org' });
export const Timestamp = Type.String({ format: 'date-time' });

/** The error responses every route may give, so the OpenAPI document lists them. */
export const errorResponses = {
  400: ErrorBody,
  401: ErrorBody,
  403: ErrorBody,
  404: ErrorBody,
  409: ErrorBody,
  413: ErrorBody,
  415: ErrorBody,
  429: ErrorBody,
  500: ErrorBody,
  503: ErrorBody,
} as const;
