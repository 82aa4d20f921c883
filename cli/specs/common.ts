import { CHECKS, flags } from '../flags.js';

/** Where the CLI keeps or finds local state: the CA's, the agent's, endpoints.json, admin-token. */
export const DATA_DIR = flags({
  'data-dir': { type: 'string', value: 'DIR', env: ['CAIRN_DATA_DIR'], complete: 'dir', description: 'the data directory (default ./.cairn)' },
});

export const JSON_OUTPUT = flags({
  json: { type: 'boolean', default: false, description: 'print the result as JSON' },
});

/**
 * Every command that talks to the CA's admin API. The server and its trust are resolved by
 * cli/admin-target.ts, which also reads CAIRN_SERVER, CAIRN_CA_PIN and CAIRN_CA_FILE itself (so its
 * messages can say where a setting came from): no `env` here.
 */
export const ADMIN_FLAGS = flags({
  server: {
    type: 'string',
    value: 'URL',
    check: CHECKS.url,
    description: "the CA's admin URL (or CAIRN_SERVER; default: caTlsUrl from <data-dir>/endpoints.json, else http://127.0.0.1:8080)",
  },
  'ca-pin': { type: 'string', value: 'PIN', description: "trust an https --server by this pin of its TLS authority, as `cairn ca pin` prints it (or CAIRN_CA_PIN)" },
  'ca-file': { type: 'string', value: 'FILE', complete: 'file', description: "trust an https --server by this CA certificate file (or CAIRN_CA_FILE)" },
  'data-dir': { type: 'string', value: 'DIR', env: ['CAIRN_DATA_DIR'], complete: 'dir', description: 'where admin-token and endpoints.json are (default ./.cairn); CAIRN_ADMIN_TOKEN(_FILE) wins' },
  // admin by X.509-SVID instead of the admin token (the TLS listener only)
  'svid-dir': {
    type: 'string',
    value: 'DIR',
    complete: 'dir',
    description: 'authenticate with an admin SVID instead of the token: svid.pem and svid.key in DIR, as svid fetch --write leaves them (TLS only)',
  },
  'svid-from-socket': { type: 'boolean', description: "authenticate with this process's admin SVID from the Workload API (SPIFFE_ENDPOINT_SOCKET, else cairn up's socket; TLS only)" },
  ...JSON_OUTPUT,
});

export const PAGING = flags({
  'page-size': { type: 'string', value: 'N', check: CHECKS.pageSize, description: 'results per page, 1 to 500' },
  'page-token': { type: 'string', value: 'TOKEN', description: 'the page to fetch, as printed after the previous one' },
});

/** Commands that read a Workload API socket. */
export const SOCKET_FLAGS = flags({
  socket: {
    type: 'string',
    value: 'unix:///PATH',
    env: ['SPIFFE_ENDPOINT_SOCKET'],
    complete: 'file',
    description: 'the Workload API socket (default: the socket in <data-dir>/endpoints.json)',
  },
  'data-dir': { type: 'string', value: 'DIR', env: ['CAIRN_DATA_DIR'], complete: 'dir', description: 'where cairn up wrote endpoints.json (default ./.cairn)' },
});

/** `--wait` of the health checks. */
export const HEALTHCHECK_WAIT = flags({
  wait: { type: 'string', value: 'DURATION', check: CHECKS.duration, description: 'keep asking until healthy or this long has passed (default: ask once)' },
});

/**
 * Logging of the commands that run a server (`ca start`, `agent start`, `up`): logs go to stderr, pretty
 * on a terminal and JSON otherwise; the banner goes alone to stdout. The choices are lib/log.ts's
 * LOG_LEVELS and LOG_FORMATS (not imported: that loads pino; a unit test keeps them equal).
 * CAIRN_LOG_LEVEL / CAIRN_LOG_FORMAT are read by lib/log.ts itself, which names them when wrong.
 */
export const LOG_FLAGS = flags({
  'log-level': { type: 'string', choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], description: 'what the logs hold: info by default, request lines at debug (or CAIRN_LOG_LEVEL)' },
  'log-format': { type: 'string', choices: ['json', 'pretty'], description: 'logs on stderr as text or JSON lines (default: pretty on a terminal, JSON otherwise; or CAIRN_LOG_FORMAT)' },
});

/** `--config FILE` for long-running commands: YAML whose keys are the command's flag names. */
export const CONFIG_FLAG = flags({
  config: { type: 'string', value: 'FILE', complete: 'file', description: 'read flags from a YAML file (keys are flag names; ${VAR} and ${VAR:-default} expand; flags win)' },
});
