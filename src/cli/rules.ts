import fs from 'node:fs';
import readline from 'node:readline';
import type { Command } from 'commander';
import { describeErrors } from '../model/json-schema.js';
import { validateSpan, type Span } from '../model/span.js';
import { canonicalTenantId } from '../model/tenant.js';
import { loadRuleFile, RuleSetCache, TraceEvaluation, type RuleHit } from '../rules/index.js';

export const EXAMPLE_RULE_FILE = `rules:
  - id: high-value-payment-controls
    name: High-value payment controls
    description: Payments over 1000 need a fraud check and never bypass validation
    severity: critical
    condition: |
      when { payment.charge_card.where(amount > 1000) }
      always { payment.fraud_check }
      never { payment.bypass_validation }
  - id: too-many-retries
    name: More than 3 retries
    severity: medium
    condition: count(http.retry) > 3`;

export interface TraceResult {
  tenantId: string;
  traceId: string;
  spanCount: number;
  hits: RuleHit[];
}

/**
 * Offline evaluation: spans (spanledger JSON lines, any order) grouped by tenant and trace, each
 * trace evaluated incrementally against the file's rules. Only one trace state per trace is held,
 * never the spans. A line that is not a valid span stops the run, naming the line.
 */
export async function testRules(rulesFile: string, spansFile: string): Promise<{ traces: TraceResult[]; spans: number; rules: number }> {
  const rules = await loadRuleFile(rulesFile);
  const cache = new RuleSetCache();
  const traces = new Map<string, { tenantId: string; traceId: string; evaluation: TraceEvaluation }>();
  const lines = readline.createInterface({ input: fs.createReadStream(spansFile), crlfDelay: Infinity });
  let lineNumber = 0;
  let spans = 0;
  for await (const line of lines) {
    lineNumber++;
    if (line.trim() === '') continue;
    const { tenantId, span } = spanOfLine(line, `${spansFile}:${lineNumber}`);
    const key = `${tenantId}/${span.traceId}`;
    let trace = traces.get(key);
    if (!trace) {
      trace = { tenantId, traceId: span.traceId, evaluation: new TraceEvaluation(cache.get(tenantId, rules)) };
      traces.set(key, trace);
    }
    trace.evaluation.add(span);
    spans++;
  }
  const results = [...traces.values()].map((t) => ({ tenantId: t.tenantId, traceId: t.traceId, spanCount: t.evaluation.state.spanCount, hits: t.evaluation.hits() }));
  return { traces: results, spans, rules: rules.filter((r) => r.enabled).length };
}

function spanOfLine(line: string, where: string): { tenantId: string; span: Span } {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    throw new Error(`${where}: not JSON: ${(e as Error).message}`);
  }
  if (!validateSpan(value)) throw new Error(`${where}: ${describeErrors(validateSpan.errors)}`);
  const tenantId = value.tenantId === undefined ? undefined : canonicalTenantId(value.tenantId);
  if (tenantId === undefined) throw new Error(`${where}: tenantId: is required (a span log line carries its tenant)`);
  return { tenantId, span: value };
}

/** One JSON object per rule that fired on a trace. */
export function hitLines(traces: TraceResult[]): string[] {
  return traces.flatMap((t) =>
    t.hits.map((h) => JSON.stringify({ tenantId: t.tenantId, traceId: t.traceId, ruleId: h.ruleId, ruleName: h.ruleName, severity: h.severity, message: h.message, evidence: h.evidence })),
  );
}

export function renderResults(result: { traces: TraceResult[]; spans: number; rules: number }): string {
  const out: string[] = [];
  for (const t of result.traces) {
    if (t.hits.length === 0) continue;
    out.push(`tenant ${t.tenantId} trace ${t.traceId} (${t.spanCount} spans)`);
    for (const h of t.hits) {
      out.push(`  ${h.severity} ${h.ruleId}: ${h.message}`);
      if (h.evidence.spanIds.length > 0) out.push(`    spans: ${h.evidence.spanIds.join(', ')}`);
    }
  }
  const signals = result.traces.reduce((n, t) => n + t.hits.length, 0);
  const fired = result.traces.filter((t) => t.hits.length > 0).length;
  out.push(`${result.spans} spans, ${result.traces.length} traces, ${result.rules} rules: ${signals} signal(s) on ${fired} trace(s)`);
  return out.join('\n');
}

export function registerRuleCommands(program: Command): void {
  program
    .command('rules')
    .description('trace rules (BeTrace DSL)')
    .command('test')
    .description('evaluate a rule file offline against spans (JSON lines, any order): per trace, the rules that fired and why')
    .requiredOption('--file <rules.yaml>', 'rule file (YAML or JSON), see the example below')
    .requiredOption('--spans <trace.jsonl>', 'spans, one spanledger JSON span per line (span log lines), in any order')
    .option('--json', 'one JSON object per rule that fired on a trace (tenantId, traceId, ruleId, severity, message, evidence)', false)
    .addHelpText('after', `\nExample rule file:\n\n${EXAMPLE_RULE_FILE}\n`)
    .action(async (opts: { file: string; spans: string; json: boolean }) => {
      const result = await testRules(opts.file, opts.spans);
      if (opts.json) {
        for (const line of hitLines(result.traces)) console.log(line);
      } else {
        console.log(renderResults(result));
      }
    });
}
