/**
 * The slowest fault scenarios (a 60 s database outage, agents waiting out SVID half-lives) are
 * marked with this: `CAIRN_SKIP_SLOW=1 npm test` leaves them out of a quick local run. CI and
 * `npm run reliability` always run them.
 */
export const slowScenario = (): boolean => process.env.CAIRN_SKIP_SLOW !== '1';
