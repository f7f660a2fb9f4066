import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { capReason } from '../errors.js';
import { canonicalTenantId } from '../model/tenant.js';
import { RuleSetCache } from './cache.js';
import type { CompiledRuleSet, RuleDefinition } from './compile.js';
import { BAD_RULE_REASONS, encodeRuleValue, parseRuleRecord, type BadRuleReason } from './rule-record.js';

/** Where a record stands in the rules topic (for the logs). `offset` is Kafka's offset as a decimal string. */
export interface RuleRecordMeta {
  partition: number;
  offset: string;
  /** The record's timestamp, ms since the epoch. */
  timestamp: number;
}

/**
 * The rules topic as a table the book follows (a CompactedTable, see src/kafka/rules-feed.ts):
 * `open` hands every record, from the beginning and then live, to `onRecord` (key '' when the
 * record has no usable key, value null for a tombstone).
 */
export interface RuleRecordFeed {
  /** The topic's name, for the logs. */
  readonly topic: string;
  open(onRecord: (key: string, value: Buffer | null, meta: RuleRecordMeta) => void): {
    /** Reads the whole topic, then follows it; fails naming the topic if it cannot be read in time. */
    start(): Promise<void>;
    /** Resolves once every record written to the topic before the call is handed over. */
    catchUp(timeoutMs: number): Promise<void>;
    close(): Promise<void>;
  };
}

/** A rule and the tenant it belongs to. */
export type TenantRule = RuleDefinition & { tenantId: string };

/** One change of the book: `rule` undefined when the rule was deleted, `previous` undefined when it is new. */
export interface RuleChange {
  tenantId: string;
  ruleId: string;
  rule: RuleDefinition | undefined;
  previous: RuleDefinition | undefined;
}

export interface RuleBookOptions {
  /** The rules topic (RULES_TOPIC), record by record. */
  feed: RuleRecordFeed;
  logger: Logger;
  /** Where the `spanledger_rules_*` metrics are registered (one RuleBook per registry). */
  registry: Registry;
  /** The cache of compiled rule sets; by default one of its own. */
  cache?: RuleSetCache;
}

/**
 * Every tenant's rules, followed live from the compacted rules topic (see rule-record.ts for the
 * records). A record that is not a valid rule is logged (warn, with the reason), counted in
 * `spanledger_rules_bad_total{reason}` and skipped: a bad update of an existing rule leaves the
 * rule's previous good version in place, while this process runs. Once the topic is compacted
 * the bad record may be the only one left for its key, so a process started later has no
 * version of that rule at all (until a good one is put again).
 *
 * A tenant's enabled rules are compiled together, through the RuleSetCache, on the first
 * `rulesFor` after a change of one of them: once per change, whatever the versions say.
 */
/** Tenants whose rulesFor answer is kept (hostile input may name any number of tenants). */
const MAX_ANSWERS = 10_000;

export class RuleBook {
  private readonly table: ReturnType<RuleRecordFeed['open']>;
  private readonly logger: Logger;
  private readonly cache: RuleSetCache;
  /** tenant → rule id → rule. */
  private readonly rules = new Map<string, Map<string, RuleDefinition>>();
  private readonly listeners = new Set<(change: RuleChange) => void>();
  private readonly bad: Counter<'reason'>;
  private started = false;
  /**
   * rulesFor's answer per (canonical) tenant until one of its rules changes: a rule worker asks
   * once per trace, and a tenant without rules once per span, so the answer must not cost a sort
   * and a cache key each time. `null`: the tenant has no enabled rule.
   */
  private readonly answers = new Map<string, CompiledRuleSet | null>();
  private answerHits = 0;

  constructor(options: RuleBookOptions) {
    this.logger = options.logger.child({ component: 'rule-book', topic: options.feed.topic });
    this.cache = options.cache ?? new RuleSetCache();
    this.table = options.feed.open((key, value, meta) => this.apply(key, value, meta));
    const registers = [options.registry];
    this.bad = new Counter({ name: 'spanledger_rules_bad_total', help: 'Records of the rules topic skipped because they are not a valid rule, by reason', labelNames: ['reason'], registers });
    for (const reason of BAD_RULE_REASONS) this.bad.inc({ reason }, 0);
    const rules = this.rules;
    new Gauge({
      name: 'spanledger_rules_loaded',
      help: 'Rules held per tenant (enabled or not)',
      labelNames: ['tenant'],
      registers,
      collect() {
        this.reset();
        for (const [tenant, byId] of rules) this.set({ tenant }, byId.size);
      },
    });
    const cache = this.cache;
    const book = this;
    const counts: Array<['hits' | 'misses', string]> = [
      ['hits', 'Rule set lookups answered by an already compiled rule set'],
      ['misses', 'Rule set lookups that compiled the tenant\'s rules (first use, or a rule changed)'],
    ];
    for (const [field, help] of counts) {
      // Fed from the cache's own totals when scraped.
      let seen = 0;
      new Counter({
        name: `spanledger_rules_cache_${field}_total`,
        help,
        registers,
        collect() {
          const total = cache.stats()[field] + (field === 'hits' ? book.answerHits : 0);
          this.inc(total - seen);
          seen = total;
        },
      });
    }
    new Gauge({
      name: 'spanledger_rules_cache_tenants',
      help: 'Tenants whose compiled rule set is cached',
      registers,
      collect() {
        this.set(cache.stats().tenants);
      },
    });
  }

  /** Reads the whole topic, then follows it; fails naming the topic if it cannot be read in time. */
  async start(): Promise<void> {
    await this.table.start();
    this.started = true;
    this.logger.info({ tenants: this.rules.size, rules: this.list().length }, 'rules topic read');
  }

  /** Resolves once every record written to the topic before the call is applied. */
  catchUp(timeoutMs = 10_000): Promise<void> {
    return this.table.catchUp(timeoutMs);
  }

  close(): Promise<void> {
    return this.table.close();
  }

  /** The tenant's enabled rules, compiled; undefined when it has none. */
  rulesFor(tenantId: string): CompiledRuleSet | undefined {
    const answer = this.answers.get(tenantId);
    if (answer !== undefined) {
      this.answerHits++;
      return answer ?? undefined;
    }
    const tenant = canonicalTenantId(tenantId) ?? tenantId;
    const enabled = [...(this.rules.get(tenant)?.values() ?? [])].filter((r) => r.enabled).sort(byId);
    const ruleSet = enabled.length === 0 ? undefined : this.cache.get(tenant, enabled);
    // Only canonical ids are kept (changes clear them by canonical id); bounded like the cache.
    if (tenant === tenantId) {
      if (this.answers.size >= MAX_ANSWERS) this.answers.clear();
      this.answers.set(tenant, ruleSet ?? null);
    }
    return ruleSet;
  }

  /** Tenants with at least one rule (enabled or not), sorted. */
  tenants(): string[] {
    return [...this.rules.keys()].sort();
  }

  /** The rules of one tenant, or of every tenant, sorted by tenant and id. */
  list(tenantId?: string): TenantRule[] {
    const tenants = tenantId === undefined ? this.tenants() : [canonicalTenantId(tenantId) ?? tenantId];
    return tenants.flatMap((tenant) => [...(this.rules.get(tenant)?.values() ?? [])].sort(byId).map((r) => ({ tenantId: tenant, ...r })));
  }

  /** Calls `listener` after each change of a rule (also while start() reads the topic). Returns the unsubscribe function. */
  onChange(listener: (change: RuleChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Applies one record of the rules topic (the table's callback; public for tests). */
  apply(key: string, value: Buffer | null, meta: RuleRecordMeta): void {
    const record = parseRuleRecord(key, value);
    if (!record.ok) {
      this.skip(record.reason, record.message, key, meta);
      return;
    }
    const { tenantId, ruleId, rule } = record;
    const byId = this.rules.get(tenantId);
    const previous = byId?.get(ruleId);
    if (rule === undefined) {
      if (previous === undefined) return;
      byId!.delete(ruleId);
      if (byId!.size === 0) this.rules.delete(tenantId);
    } else {
      if (previous !== undefined && encodeRuleValue(previous).equals(encodeRuleValue(rule))) return;
      if (byId === undefined) this.rules.set(tenantId, new Map([[ruleId, rule]]));
      else byId.set(ruleId, rule);
    }
    this.cache.invalidate(tenantId);
    this.answers.delete(tenantId);
    this.logger[this.started ? 'info' : 'debug']({ tenantId, ruleId, version: rule?.version, partition: meta.partition, offset: meta.offset }, rule === undefined ? 'rule deleted' : previous === undefined ? 'rule added' : 'rule changed');
    const change: RuleChange = { tenantId, ruleId, rule, previous };
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (e) {
        this.logger.error({ err: e, tenantId, ruleId }, 'rule change listener failed');
      }
    }
  }

  private skip(reason: BadRuleReason, message: string, key: string, meta: RuleRecordMeta): void {
    this.bad.inc({ reason });
    this.logger.warn({ reason, key: key.slice(0, 300), partition: meta.partition, offset: meta.offset }, `bad rule record skipped: ${capReason(message)}`);
  }
}

function byId(a: RuleDefinition, b: RuleDefinition): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}
