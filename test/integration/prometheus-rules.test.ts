import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, inject, it } from 'vitest';
import { parse } from 'yaml';
import { ROOT } from '../support/harness.js';

const run = promisify(execFile);
const PROMETHEUS_DIR = path.join(ROOT, 'deploy', 'prometheus');
const ALERTS = path.join(PROMETHEUS_DIR, 'alerts.yml');
const ALERTS_TEST = path.join(PROMETHEUS_DIR, 'alerts.test.yml');
// The suite prints one line when Prometheus could not be installed (test/support/prometheus.ts).
const prometheusSkipped = inject('prometheusSkipReason') !== '';

interface AlertRule {
  alert: string;
  expr: string;
  annotations?: Record<string, string>;
}

function alertRules(): AlertRule[] {
  const doc = parse(fs.readFileSync(ALERTS, 'utf8')) as { groups: Array<{ rules: AlertRule[] }> };
  return doc.groups.flatMap((g) => g.rules);
}

/** GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces → hyphens. */
function anchorOf(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
}

describe('deploy/prometheus/alerts.yml', () => {
  it("every alert has a summary, a description and a runbook_url that is a section of README.md", () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const anchors = new Set(readme.split('\n').filter((l) => /^#{1,6} /.test(l)).map((l) => anchorOf(l.replace(/^#+ /, ''))));
    const rules = alertRules();
    expect(rules.length).toBeGreaterThan(0);
    for (const rule of rules) {
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
      expect(rule.annotations?.description, rule.alert).toBeTruthy();
      const runbook = rule.annotations?.runbook_url ?? '';
      expect(runbook, rule.alert).toMatch(/^README\.md#/);
      expect(anchors.has(runbook.slice('README.md#'.length)), `${rule.alert}: ${runbook} is no heading of README.md`).toBe(true);
    }
  });

  it('every alert is exercised by alerts.test.yml', () => {
    const tests = parse(fs.readFileSync(ALERTS_TEST, 'utf8')) as { tests: Array<{ alert_rule_test?: Array<{ alertname: string }> }> };
    const tested = new Set(tests.tests.flatMap((t) => (t.alert_rule_test ?? []).map((a) => a.alertname)));
    expect(alertRules().map((r) => r.alert).filter((a) => !tested.has(a))).toEqual([]);
  });
});

describe.skipIf(prometheusSkipped)('promtool', () => {
  it('check rules accepts alerts.yml with every rule', async () => {
    const { stdout } = await run('promtool', ['check', 'rules', ALERTS]);
    expect(stdout).toContain(`SUCCESS: ${alertRules().length} rules found`);
  });

  it('test rules passes alerts.test.yml (each alert fires on its series and stays quiet on the look-alikes)', async () => {
    // promtool exits 1 on any failed expectation; its report is the error message then.
    const { stdout } = await run('promtool', ['test', 'rules', ALERTS_TEST], { cwd: PROMETHEUS_DIR }).catch((e: { stdout: string; stderr: string }) => {
      throw new Error(`promtool test rules failed:\n${e.stdout}${e.stderr}`);
    });
    expect(stdout).toContain('SUCCESS');
  });

  it('check config accepts the example prometheus.yml and the rule file it loads', async () => {
    const { stdout } = await run('promtool', ['check', 'config', path.join(PROMETHEUS_DIR, 'prometheus.yml')]);
    expect(stdout).toContain('is valid prometheus config file syntax');
    expect(stdout).toContain(`SUCCESS: ${alertRules().length} rules found`);
  });
});
