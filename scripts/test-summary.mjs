#!/usr/bin/env node
// Prints vitest's JSON reports (one per run: `make test` runs the unit and the integration
// projects separately) as one plain closing line: "tests: N passed, N failed, N skipped".
// A report that was not written counts as one failed test; a file that failed outside its tests
// (a beforeAll: its tests count as skipped) is named after the counts.
import fs from 'node:fs';

const files = process.argv.length > 2 ? process.argv.slice(2) : ['.cache/vitest.json'];
let passed = 0;
let failed = 0;
let skipped = 0;
let failedFiles = 0;
const missing = [];
for (const file of files) {
  if (!fs.existsSync(file)) {
    missing.push(file);
    failed += 1;
    continue;
  }
  const r = JSON.parse(fs.readFileSync(file, 'utf8'));
  passed += r.numPassedTests;
  failed += r.numFailedTests;
  skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  failedFiles += (r.testResults ?? []).filter((t) => t.status === 'failed').length;
}
const notes = [...(failedFiles > 0 ? [`${failedFiles} test file${failedFiles === 1 ? '' : 's'} failed`] : []), ...(missing.length > 0 ? [`no vitest report: ${missing.join(', ')}`] : [])];
console.log(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped${notes.length > 0 ? `; ${notes.join('; ')}` : ''}`);
