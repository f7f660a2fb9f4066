import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { addDlqCommands, dlqCommandSettings } from '../../../src/cli/dlq-command.js';
import { envValues, resolveSettings } from '../../../src/config/load.js';

function dlqHelp(name: 'inspect' | 'replay'): string {
  const program = new Command('spanledger');
  addDlqCommands(program);
  const dlq = program.commands.find((c) => c.name() === 'dlq')!;
  // One line: commander wraps the help to the terminal's width.
  return dlq.commands.find((c) => c.name() === name)!.helpInformation().replace(/\s+/g, ' ');
}

describe('dlq commands', () => {
  it.each(['inspect', 'replay'] as const)("%s defaults --topic to the span workers' dead-letter topic setting, with its environment variable", (name) => {
    expect(dlqHelp(name)).toMatch(/--topic <value> dead-letter topic to read [^"]*\(default: "spans\.dlq", env: SPANS_DLQ_TOPIC\)/);
  });

  it('takes the topic from SPANS_DLQ_TOPIC or the config file, checked as a topic name', () => {
    expect(resolveSettings(dlqCommandSettings, envValues(dlqCommandSettings, {}), {}).topic).toBe('spans.dlq');
    expect(resolveSettings(dlqCommandSettings, envValues(dlqCommandSettings, { SPANS_DLQ_TOPIC: 'prod.spans.dlq' }), {}).topic).toBe('prod.spans.dlq');
    expect(resolveSettings(dlqCommandSettings, envValues(dlqCommandSettings, {}), { SPANS_DLQ_TOPIC: 'file.spans.dlq' }).topic).toBe('file.spans.dlq');
    expect(() => resolveSettings(dlqCommandSettings, envValues(dlqCommandSettings, { SPANS_DLQ_TOPIC: 'no spaces' }), {})).toThrow(/^invalid configuration: SPANS_DLQ_TOPIC="no spaces": must be a valid Kafka topic name$/);
  });
});
