import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The dashboard's shape, as Grafana imports it (no Grafana here): whether its queries evaluate on
 * real workers is test/integration/dashboard-live.test.ts's job.
 */
const DASHBOARD = path.resolve(import.meta.dirname, '../../../deploy/grafana/spanledger.json');

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: Array<{ refId: string; expr: string; datasource?: { uid: string } }>;
}

const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as {
  __inputs: Array<{ name: string; type: string; pluginId: string }>;
  templating: { list: Array<{ name: string; type: string; datasource?: { uid: string } }> };
  panels: Panel[];
};
const DATASOURCE = '${DS_PROMETHEUS}';
const queryPanels = dashboard.panels.filter((p) => p.type !== 'row');

describe('deploy/grafana/spanledger.json', () => {
  it('asks for its Prometheus data source on import and as a variable, and every query uses it', () => {
    expect(dashboard.__inputs).toContainEqual(expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' }));
    expect(dashboard.templating.list.find((v) => v.name === 'DS_PROMETHEUS')?.type).toBe('datasource');
    for (const p of queryPanels) {
      expect(p.datasource?.uid, p.title).toBe(DATASOURCE);
      for (const t of p.targets ?? []) expect(t.datasource?.uid, p.title).toBe(DATASOURCE);
    }
    for (const v of dashboard.templating.list.filter((x) => x.type === 'query')) expect(v.datasource?.uid, v.name).toBe(DATASOURCE);
  });

  it('every panel has queries with distinct refIds, and every query is filtered by the job and instance variables', () => {
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(expect.arrayContaining(['job', 'instance', 'topic']));
    for (const p of queryPanels) {
      const targets = p.targets ?? [];
      expect(targets.length, p.title).toBeGreaterThan(0);
      expect(new Set(targets.map((t) => t.refId)).size, p.title).toBe(targets.length);
      for (const t of targets) {
        expect(t.expr, p.title).toContain('job=~"$job"');
        expect(t.expr, p.title).toContain('instance=~"$instance"');
      }
    }
  });

  it('panel ids are unique and panels lie side by side on the 24-column grid without overlapping', () => {
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
    const cells = new Map<string, string>();
    for (const p of dashboard.panels) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let row = y; row < y + h; row += 1) {
        for (let col = x; col < x + w; col += 1) {
          const key = `${row}:${col}`;
          expect(cells.get(key), `${p.title} overlaps ${cells.get(key)}`).toBeUndefined();
          cells.set(key, p.title);
        }
      }
    }
  });
});
