import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The house rules of src/ (docs/architecture.md): which folder may import which, no import cycle,
 * no file over 500 lines. Read from the source text, type-only imports included: a type import
 * that points upward is still a dependency a newcomer has to follow.
 */
const SRC = path.resolve(__dirname, '../../src');

/**
 * What each folder may import besides itself, lowest layer first. An entry names a folder or a
 * single file of one (`sinks/types`: the sink port, which the pipeline core calls).
 */
const MAY_IMPORT: Readonly<Record<string, readonly string[]>> = {
  errors: [],
  model: ['errors'],
  config: ['errors', 'model'],
  pipeline: ['errors', 'model', 'sinks/types'],
  sinks: ['errors', 'model', 'config'],
  rules: ['errors', 'model', 'pipeline/types'],
  observability: ['errors', 'model', 'pipeline'],
  kafka: ['errors', 'model', 'config', 'pipeline', 'rules', 'observability'],
  workers: ['errors', 'model', 'config', 'pipeline', 'sinks', 'rules', 'observability', 'kafka'],
  devtools: ['errors', 'model', 'rules'],
  cli: ['errors', 'model', 'config', 'pipeline', 'sinks', 'rules', 'observability', 'kafka', 'workers', 'devtools'],
};

const IMPORT = /^\s*(?:import|export)\s[^'"]*?from\s+'(\.{1,2}\/[^']+)'/gm;

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(full);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [full] : [];
  });
}

/** `src/pipeline/pipeline.ts` → `pipeline/pipeline`; a top-level file is its own folder (`errors`). */
function moduleName(file: string): string {
  return path.relative(SRC, file).replace(/\.ts$/, '').split(path.sep).join('/');
}

function folderOf(module: string): string {
  return module.split('/')[0]!;
}

const files = sourceFiles(SRC);
const graph = new Map<string, string[]>(
  files.map((file) => {
    const text = fs.readFileSync(file, 'utf8');
    const targets = [...text.matchAll(IMPORT)].map((m) => moduleName(path.resolve(path.dirname(file), m[1]!.replace(/\.js$/, '.ts'))));
    return [moduleName(file), targets];
  }),
);

describe('the layout of src/', () => {
  it('every folder is a known layer', () => {
    const unknown = [...new Set([...graph.keys()].map(folderOf))].filter((f) => !(f in MAY_IMPORT));
    expect(unknown).toEqual([]);
  });

  it('imports only point down the layers', () => {
    const upward: string[] = [];
    for (const [from, targets] of graph) {
      const folder = folderOf(from);
      for (const to of targets) {
        if (folderOf(to) === folder) continue;
        const allowed = MAY_IMPORT[folder] ?? [];
        if (!allowed.some((a) => to === a || folderOf(to) === a)) upward.push(`${from} → ${to}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('only src/kafka imports a Kafka client library: everything else goes through the facade', () => {
    const clientImport = /^\s*(?:import|export)\s[^'"]*?from\s+'(kafkajs|kafkajs\/[^']*|@platformatic\/kafka|@platformatic\/kafka\/[^']*)'|^\s*import\s+'(kafkajs[^']*|@platformatic\/kafka[^']*)'/gm;
    const outside = files
      .filter((f) => folderOf(moduleName(f)) !== 'kafka' && clientImport.test(fs.readFileSync(f, 'utf8')))
      .map((f) => moduleName(f));
    expect(outside).toEqual([]);
  });

  it('has no import cycle', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (module: string): void => {
      state.set(module, 'open');
      stack.push(module);
      for (const next of graph.get(module) ?? []) {
        if (!graph.has(next)) continue;
        if (state.get(next) === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next].join(' → '));
        else if (state.get(next) === undefined) visit(next);
      }
      stack.pop();
      state.set(module, 'done');
    };
    for (const module of graph.keys()) if (state.get(module) === undefined) visit(module);
    expect(cycles).toEqual([]);
  });

  it('no file is over 500 lines', () => {
    const long = files.map((f) => [moduleName(f), fs.readFileSync(f, 'utf8').split('\n').length] as const).filter(([, lines]) => lines > 500);
    expect(long).toEqual([]);
  });
});
