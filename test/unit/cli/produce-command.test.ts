import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { addProduceCommand } from '../../../src/cli/produce-command.js';

function produceHelp(kind: 'spans' | 'signals'): string {
  const produce = new Command('produce');
  addProduceCommand(produce, kind);
  // One line: commander wraps the help to the terminal's width.
  return produce.commands.find((c) => c.name() === kind)!.helpInformation().replace(/\s+/g, ' ');
}

describe('produce command', () => {
  it("defaults --topic to the workers' topic setting, with its environment variable", () => {
    expect(produceHelp('spans')).toMatch(/--topic <value> topic to produce to \(topic the span workers read\) \(default: "spans", env: SPANS_TOPIC\)/);
    expect(produceHelp('signals')).toMatch(/--topic <value> topic to produce to \(topic the signal workers read\) \(default: "signals", env: SIGNALS_TOPIC\)/);
  });

  it("sizes the oversized record from the workers' MAX_MESSAGE_BYTES and shows every default", () => {
    const help = produceHelp('spans');
    expect(help).toMatch(/--max-message-bytes <value> [^(]*\(default: "1000000", env: MAX_MESSAGE_BYTES\)/);
    const options = help.split(/ (?=--[a-z])/).slice(1).filter((o) => !o.startsWith('--help'));
    expect(options.map((o) => o.split(' ')[0])).toEqual(['--count', '--tenants', '--rate', '--bad', '--batch-size', '--encoding', '--spans-per-message', '--tenant-header', '--topic', '--max-message-bytes', '--brokers', '--client-id', '--topic-partitions', '--kafka-client']);
    for (const option of options) expect(option).toMatch(/(\(|, )default: /);
  });

  it('offers the OTLP encodings for spans only, defaulting to spanledger JSON and 100 spans a message', () => {
    const help = produceHelp('spans');
    expect(help).toMatch(/--encoding <encoding> .*\(choices: "json", "otlp_proto", "otlp_json", default: "json"\)/);
    expect(help).toMatch(/--spans-per-message <n> .*\(default: 100\)/);
    expect(help).toMatch(/--tenant-header .*\(default: false\)/);
    expect(produceHelp('signals')).not.toMatch(/--encoding|--spans-per-message|--tenant-header/);
  });

  it('refuses an unknown encoding', () => {
    const produce = new Command('produce').exitOverride();
    addProduceCommand(produce, 'spans');
    const spans = produce.commands.find((c) => c.name() === 'spans')!.exitOverride().configureOutput({ writeErr: () => undefined });
    expect(() => spans.parse(['--encoding', 'otlp_xml'], { from: 'user' })).toThrow(/argument 'otlp_xml' is invalid. Allowed choices are json, otlp_proto, otlp_json/);
  });
});
