import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { addTopicsCommand, parseGroups, topicLines } from '../../../src/cli/topics-command.js';
import { ConfigError } from '../../../src/errors.js';

function createHelp(): string {
  const program = new Command('spanledger');
  addTopicsCommand(program);
  const create = program.commands.find((c) => c.name() === 'topics')!.commands.find((c) => c.name() === 'create')!;
  // One line: commander wraps the help to the terminal's width.
  return create.helpInformation().replace(/\s+/g, ' ');
}

describe('topics create', () => {
  it("shows every option with its default, and each topic under the worker settings' environment variable", () => {
    const help = createHelp();
    const options = help.split(/ (?=--[a-z])/).slice(1).filter((o) => !o.startsWith('--help'));
    expect(options.map((o) => o.split(' ')[0])).toEqual([
      '--groups',
      '--spans-topic',
      '--spans-dlq-topic',
      '--rules-topic',
      '--rules-dlq-topic',
      '--rules-checkpoint-topic',
      '--signals-topic',
      '--signals-dlq-topic',
      '--archive-dlq-topic',
      '--brokers',
      '--client-id',
      '--topic-partitions',
      '--kafka-client',
    ]);
    for (const option of options) expect(option).toMatch(/default: /);
    expect(help).toMatch(/--groups <list> .*\(default: "spans,rules,signals"\)/);
    expect(help).toMatch(/--spans-topic <value> .*\(default: "spans", env: SPANS_TOPIC\)/);
    expect(help).toMatch(/--rules-dlq-topic <value> .*\(default: "spans.rules.dlq", env: RULES_DLQ_TOPIC\)/);
    expect(help).toMatch(/--topic-partitions <value> .*\(default: "6", env: TOPIC_PARTITIONS\)/);
  });

  it('takes a list of the groups (archive only when asked for), and refuses anything else', () => {
    expect(parseGroups('spans, rules,spans')).toEqual(['spans', 'rules']);
    expect(parseGroups('archive')).toEqual(['archive']);
    expect(() => parseGroups('spans,traces')).toThrow(ConfigError);
    expect(() => parseGroups(' , ')).toThrow(/--groups takes a comma-separated list of spans, rules, signals, archive/);
  });

  it('prints each topic created or found with its partitions, and what a topic with too few costs', () => {
    const needs = [
      { topic: 'spans', numPartitions: 6 },
      { topic: 'spans.dlq', numPartitions: 6, deadLettersOf: 'spans' },
      { topic: 'rules', numPartitions: 1 },
    ];
    const lines = topicLines(needs, ['spans.dlq'], new Map([['spans', 1], ['spans.dlq', 6], ['rules', 1]]), new Set(['spans']));
    expect(lines).toEqual([
      'found   spans      1 partition: fewer than the 6 it would be created with; at most 1 worker of each group reading it gets records (add partitions: kafka-topics.sh --alter --topic spans --partitions 6)',
      'created spans.dlq  6 partitions',
      'found   rules      1 partition',
    ]);
    // A dead-letter topic with fewer partitions costs nothing: no group consumes it.
    expect(topicLines(needs.slice(1, 2), [], new Map([['spans.dlq', 2]]), new Set(['spans']))).toEqual(['found   spans.dlq  2 partitions']);
  });
});
