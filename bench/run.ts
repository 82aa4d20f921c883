import { benchAgentApi } from './agent-api.js';
import { benchIssuance } from './issuance.js';

const only = process.argv[2];
const suites: Record<string, () => Promise<void>> = { issuance: benchIssuance, 'agent-api': benchAgentApi };

for (const [name, run] of Object.entries(suites)) {
  if (only && only !== name) continue;
  console.error(`== bench ${name}`);
  await run();
}
