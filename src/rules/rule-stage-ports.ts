/**
 * What the rule stage (RuleProcessor) needs from the outside, as it needs it: a producer of
 * signals, a store of per-partition checkpoints, and every tenant's compiled rules. The Kafka
 * implementations (src/kafka) are wired by the rule worker (src/workers/rule-worker.ts); tests
 * pass in-memory ones.
 *
 * Failures: each implementation classifies its store's failures into the typed errors of
 * src/errors.ts (RetriableError: worth retrying; a non-retriable SpanledgerError: not) in one
 * place of its own. The rule stage passes them on unchanged: it never decides retriability.
 */
import type { CompiledRuleSet } from './compile.js';

/** One signal as a record of the signals topic: key and tenant header = the tenant id, value = the signal as JSON. */
export interface SignalRecord {
  key: string;
  value: string;
  headers: Record<string, string>;
}

/** Produces signals (acks=all): `publish` resolves once the broker acknowledged every record. */
export interface SignalPublisher {
  /** Most bytes (keys + values) one `publish` call should carry. */
  readonly maxRequestBytes: number;
  start(): Promise<void>;
  /** Rejects with the publisher's typed error (see the module comment). */
  publish(topic: string, records: SignalRecord[]): Promise<void>;
  close(): Promise<void>;
}

/** Where the rule stage's checkpoints are kept, one per source partition. */
export interface CheckpointStorePort {
  start(): Promise<void>;
  /** The last checkpoint saved for the partition by any worker of the group; rejects with the store's typed error. */
  load(topic: string, partition: number): Promise<Buffer | undefined>;
  /** Resolves once the checkpoint is durable; rejects with the store's typed error. */
  save(topic: string, partition: number, value: Buffer): Promise<void>;
  close(): Promise<void>;
}

/** Every tenant's compiled rules, followed live (a RuleBook). */
export interface RulesTable {
  start(): Promise<void>;
  rulesFor(tenantId: string): CompiledRuleSet | undefined;
  close(): Promise<void>;
}
