export * from './errors.js';
export * from './id.js';
export * from './bundle/jwk.js';
export * from './bundle/bundle.js';
export * from './svid/x509.js';
export * from './svid/jwt.js';
