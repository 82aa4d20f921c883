import { benchAgentApi } from './agent-api.js';
import { benchAudit } from './audit.js';
import { benchAuthorityTaint } from './authority-taint.js';
import { benchFootprint } from './footprint.js';
import { benchIssuance } from './issuance.js';
import { benchWorkloadApi } from './workload-api.js';
import { benchTemplates } from './templates.js';

const only = process.argv[2];
const suites: Record<string, () => Promise<void>> = { issuance: benchIssuance, 'agent-api': benchAgentApi, 'workload-api': benchWorkloadApi, footprint: benchFootprint, audit: benchAudit, 'authority-taint': benchAuthorityTaint, templates: benchTemplates };

for (const [name, run] of Object.entries(suites)) {
  if (only && only !== name) continue;
  console.error(`== bench ${name}`);
  await run();
}
