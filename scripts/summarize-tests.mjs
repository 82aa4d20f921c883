// Prints one closing line over all suite runs: "Tests: N passed, N failed, N skipped".
import { readFileSync, existsSync } from 'node:fs';

let passed = 0, failed = 0, skipped = 0;
for (const file of process.argv.slice(2)) {
  if (!existsSync(file)) { failed += 1; console.log(`missing report ${file}`); continue; }
  const r = JSON.parse(readFileSync(file, 'utf8'));
  passed += r.numPassedTests;
  // A file that fails to load has no failed tests of its own; count it so it cannot pass silently.
  failed += r.numFailedTests > 0 ? r.numFailedTests : (r.numFailedTestSuites ?? 0);
  skipped += r.numPendingTests + r.numTodoTests;
  console.log(`${file.split('/').pop().replace('.json', '')}: ${r.numPassedTests} passed, ${r.numFailedTests} failed (${r.numTotalTestSuites} files)`);
}
console.log(`Tests: ${passed} passed, ${failed} failed, ${skipped} skipped`);
