/**
 * The rule engine's public API: parse and compile tenant rules once, then evaluate traces span by
 * span with state bounded by the rules, not by the trace (see README, "Trace rules").
 */
export { parseRule } from './parser.js';
export { compileRuleSet, type CompiledRuleSet, type RuleDefinition, type RuleSpan } from './compile.js';
export { TraceEvaluation, EVIDENCE_SPAN_IDS, type RuleHit, type TraceState } from './evaluate.js';
export { RuleSetCache, type RuleCacheStats } from './cache.js';
export { parseRuleFile, loadRuleFile, checkRule, type CheckedRule, type RuleProblem } from './rule-file.js';
export { RuleBook, type RuleBookOptions, type RuleChange, type RuleRecordFeed, type RuleRecordMeta, type TenantRule } from './rule-book.js';
export { RuleProcessor, type RuleProcessorOptions, type TraceLimits } from './rule-processor.js';
export type { CheckpointStorePort, RulesTable, SignalPublisher, SignalRecord } from './rule-stage-ports.js';
export { parseRuleRecord, ruleRecordKey, encodeRuleValue, contentVersion, planPut, BAD_RULE_REASONS, type BadRuleReason, type RuleRecord, type PutPlan } from './rule-record.js';
export type { RuleAst } from './ast.js';
export { OpenTraceBudget, traceStateBytes } from './open-trace-budget.js';
export {
  PartitionTraces,
  CLOSE_REASONS,
  type PartitionTracesOptions,
  type TraceItem,
  type ClosedTrace,
  type CloseReason,
  type TraceCounters,
} from './trace-assembler.js';
export { signalsOf, signalId, SIGNAL_MESSAGE_MAX } from './trace-signals.js';
export {
  encodeCheckpoint,
  decodeCheckpoint,
  TraceCheckpointError,
  type TraceCheckpoint,
  type CheckpointOpenSegment,
  type CheckpointClosedTrace,
} from './trace-checkpoint.js';
