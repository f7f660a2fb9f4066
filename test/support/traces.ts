import { compileRuleSet, type CompiledRuleSet, type RuleDefinition } from '../../src/rules/compile.js';
import { OpenTraceBudget } from '../../src/rules/open-trace-budget.js';
import { PartitionTraces, type PartitionTracesOptions, type TraceItem } from '../../src/rules/trace-assembler.js';
import type { StoredSpan } from '../../src/model/span-line.js';

/** Test helpers for PartitionTraces: tenants, spans, rule sets and a record feed. */

export const TENANT_A = '00000000-0000-4000-8000-00000000000a';
export const TENANT_B = '00000000-0000-4000-8000-00000000000b';
export const TENANT_NO_RULES = '00000000-0000-4000-8000-00000000000c';

export const traceIdOf = (n: number): string => n.toString(16).padStart(32, '0');

export function storedSpanOf(tenantId: string, traceId: string, name: string, spanId: string, attributes: StoredSpan['attributes'] = {}): StoredSpan {
  return {
    tenantId,
    traceId,
    spanId,
    parentSpanId: '',
    name,
    kind: 1,
    startTimeUnixNano: '1764000000000000000',
    endTimeUnixNano: '1764000000250000000',
    attributes,
    status: { code: 0 },
    resource: { attributes: {} },
  };
}

export function ruleSetOf(conditions: Record<string, string>): CompiledRuleSet {
  const rules: RuleDefinition[] = Object.entries(conditions).map(([id, condition]) => ({ id, name: `rule ${id}`, severity: 'HIGH', condition, enabled: true }));
  return compileRuleSet(rules);
}

/** Records of one partition: each call is one record at the next offset, with one or more spans. */
export class RecordFeed {
  private nextOffset = 0n;
  private spanCounter = 0;

  record(timestamp: number, ...spans: Array<{ tenantId?: string; trace: number; name?: string; attributes?: StoredSpan['attributes'] }>): TraceItem[] {
    const offset = this.nextOffset++;
    return spans.map((s, index) => {
      const tenantId = s.tenantId ?? TENANT_A;
      const spanId = (++this.spanCounter).toString(16).padStart(16, '0');
      return { offset, index, tenantId, timestamp, span: storedSpanOf(tenantId, traceIdOf(s.trace), s.name ?? 'x', spanId, s.attributes) };
    });
  }

  /** The offset after the last record. */
  get end(): bigint {
    return this.nextOffset;
  }
}

export function partitionTraces(options: Partial<PartitionTracesOptions> & Pick<PartitionTracesOptions, 'rulesFor'>): PartitionTraces {
  return new PartitionTraces({ topic: 'spans', partition: 3, idleMs: 1_000, maxAgeMs: 60_000, budget: new OpenTraceBudget(1_000_000), closedMemory: 1_000, ...options });
}
