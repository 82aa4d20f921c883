import { benchAgentApi } from './agent-api.js';
import { benchAudit } from './audit.js';
import { benchAuthorityTaint } from './authority-taint.js';
import { benchFederation } from './federation.js';
import { benchFleet } from './fleet/fleet.js';
import { benchFootprint } from './footprint.js';
import { benchIssuance } from './issuance.js';
import { benchWorkloadApi } from './workload-api.js';
import { benchTemplates } from './templates.js';

const only = process.argv[2];
const suites: Record<string, () => Promise<void>> = {
  issuance: benchIssuance,
  'agent-api': benchAgentApi,
  'workload-api': benchWorkloadApi,
  footprint: benchFootprint,
  audit: benchAudit,
  'authority-taint': benchAuthorityTaint,
  templates: benchTemplates,
  federation: benchFederation,
  // only when named (it holds 10,000 agents for minutes): `npm run bench fleet [--agents 500 --entries 5000]`
  fleet: () => benchFleet(process.argv.slice(3)),
};
const onlyWhenNamed = new Set(['fleet']);

for (const [name, run] of Object.entries(suites)) {
  if (only ? only !== name : onlyWhenNamed.has(name)) continue;
  console.error(`== bench ${name}`);
  await run();
}
