import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The rule engine and its stage depend only on ports they define: nothing under src/rules
 * imports the Kafka adapter, the workers, the CLI or the pipeline's classes (a type-only import
 * of src/pipeline/types.ts, the PartitionProcessor protocol, is the one way in).
 */
const RULES_DIR = path.resolve(import.meta.dirname, '../../../src/rules');
const FORBIDDEN = ['kafka', 'workers', 'cli', 'pipeline'];

function importsOf(file: string): Array<{ specifier: string; typeOnly: boolean }> {
  const text = fs.readFileSync(file, 'utf8');
  return [...text.matchAll(/^(?:import|export)\s+(type\s+)?[^'";]*?from\s+'([^']+)'/gms)].map((m) => ({ specifier: m[2]!, typeOnly: m[1] !== undefined }));
}

describe('src/rules imports', () => {
  const files = fs.readdirSync(RULES_DIR).filter((f) => f.endsWith('.ts'));

  it('finds the rule stage and its imports', () => {
    expect(files).toContain('rule-processor.ts');
    expect(importsOf(path.join(RULES_DIR, 'rule-processor.ts')).map((i) => i.specifier)).toContain('../pipeline/types.js');
  });

  it('never reach the Kafka adapter, the workers, the CLI or the pipeline (but its types.ts, type-only)', () => {
    const offending: string[] = [];
    for (const file of files) {
      for (const { specifier, typeOnly } of importsOf(path.join(RULES_DIR, file))) {
        const folder = /^\.\.\/([^/]+)\//.exec(specifier)?.[1];
        if (folder === undefined || !FORBIDDEN.includes(folder)) continue;
        if (specifier === '../pipeline/types.js' && typeOnly) continue;
        offending.push(`${file} → ${specifier}`);
      }
    }
    expect(offending).toEqual([]);
  });
});
