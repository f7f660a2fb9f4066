/**
 * Vitest globalSetup: picks the Kafka broker for the integration tests, once per run, in this order:
 *
 * 1. KAFKA_BROKERS (host:port[,host:port...]): a broker that is already running. Nothing is started
 *    or stopped; it must answer within a minute. Tests must not assume it is empty.
 * 2. testcontainers, if a Docker engine answers within about a second (set KAFKA_TESTCONTAINERS=0 to
 *    skip this): a single-node KRaft broker from the image apache/kafka:3.9.1 (KAFKA_IMAGE overrides).
 * 3. Otherwise a local broker from `scripts/kafka.sh up` (java + mvn, no Docker), with its state in a
 *    fresh temporary KAFKA_DIR and on free loopback ports, so it never touches the dev broker
 *    (.kafka/, port 9092); it shares the dev broker's jar cache (.kafka/lib). Teardown runs
 *    `scripts/kafka.sh down` and deletes the folder.
 *
 * The address reaches the tests as `inject('kafkaBrokers')` (vitest's provide/inject: environment
 * variables set here are not seen by test workers) and is also written to process.env.KAFKA_BROKERS.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import type { TestProject } from 'vitest/node';
import { dockerAnswers } from './docker.js';
import { startKafkaWatchdog, stopKafkaWatchdog } from './kafka-watchdog.js';
import { freePort } from './net.js';

declare module 'vitest' {
  export interface ProvidedContext {
    kafkaBrokers: string;
  }
}

const ROOT = resolve(import.meta.dirname, '../..');
const KAFKA_SH = join(ROOT, 'scripts', 'kafka.sh');
const KAFKA_IMAGE = process.env.KAFKA_IMAGE ?? 'apache/kafka:3.9.1';
const READY_TIMEOUT_MS = 60_000;

interface Broker {
  brokers: string;
  /** One line for the log: which broker and why. */
  why: string;
  stop(): Promise<void>;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';
  const started = Date.now();
  const broker = await pickBroker();
  await waitUntilAnswers(broker.brokers, READY_TIMEOUT_MS).catch(async (err: unknown) => {
    await broker.stop().catch(() => {});
    throw err;
  });
  project.provide('kafkaBrokers', broker.brokers);
  process.env.KAFKA_BROKERS = broker.brokers;
  console.log(`[kafka] ${broker.why} (ready in ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  return async () => {
    await broker.stop();
  };
}

async function pickBroker(): Promise<Broker> {
  const fromEnv = process.env.KAFKA_BROKERS?.trim();
  if (fromEnv) {
    return { brokers: fromEnv, why: `using KAFKA_BROKERS=${fromEnv} (already running; not started or stopped here)`, stop: async () => {} };
  }
  if (process.env.KAFKA_TESTCONTAINERS !== '0') {
    const docker = await dockerAnswers(1_000);
    if (docker) return startContainer();
  }
  return startLocal();
}


// ---------------------------------------------------------------------------------------------
// 2. testcontainers: apache/kafka in KRaft combined mode. The client listener is published on a
// fixed free host port so that it can be advertised before the container starts; brokers talk to
// themselves (e.g. transaction markers) over a separate in-container listener.

async function startContainer(): Promise<Broker> {
  const { GenericContainer, Wait, getContainerRuntimeClient } = await import('testcontainers');
  const runtime = await getContainerRuntimeClient();
  const host = runtime.info.containerRuntime.host;
  const hostPort = await freePort();
  const container = await new GenericContainer(KAFKA_IMAGE)
    .withExposedPorts({ container: 9092, host: hostPort })
    .withEnvironment({
      KAFKA_NODE_ID: '1',
      KAFKA_PROCESS_ROLES: 'broker,controller',
      KAFKA_LISTENERS: 'PLAINTEXT://0.0.0.0:9092,BROKER://0.0.0.0:9094,CONTROLLER://0.0.0.0:9093',
      KAFKA_ADVERTISED_LISTENERS: `PLAINTEXT://${host}:${hostPort},BROKER://localhost:9094`,
      KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: 'PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT',
      KAFKA_CONTROLLER_LISTENER_NAMES: 'CONTROLLER',
      KAFKA_INTER_BROKER_LISTENER_NAME: 'BROKER',
      KAFKA_CONTROLLER_QUORUM_VOTERS: '1@localhost:9093',
      KAFKA_NUM_PARTITIONS: '1',
      KAFKA_AUTO_CREATE_TOPICS_ENABLE: 'true',
      KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: '1',
      KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: '1',
      KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: '1',
      KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: '0',
    })
    .withWaitStrategy(Wait.forLogMessage(/Kafka Server started/))
    .withStartupTimeout(120_000)
    .start();
  const brokers = `${host}:${hostPort}`;
  return {
    brokers,
    why: `started ${KAFKA_IMAGE} with testcontainers on ${brokers} (a Docker engine answered; KAFKA_BROKERS unset)`,
    stop: async () => {
      await container.stop();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// 3. scripts/kafka.sh in a temporary KAFKA_DIR on free ports.

async function startLocal(): Promise<Broker> {
  const dir = await mkdtemp(join(tmpdir(), 'spanledger-kafka-'));
  const libDir = process.env.KAFKA_LIB_DIR ?? join(ROOT, '.kafka', 'lib');
  if (!existsSync(libDir) || !readdirSync(libDir).some((f) => f.startsWith('kafka_2.13-'))) {
    console.log(`[kafka] no Docker engine and no KAFKA_BROKERS: fetching the broker jars with Maven into ${libDir} (first run only)…`);
  }
  // If the run ends without teardown (an exception, Ctrl-C, SIGTERM or SIGKILL), do not leave a broker
  // behind: a synchronous kill on 'exit', and a detached watchdog that stops the broker and deletes
  // the folder once this process is gone (signals end vitest without an 'exit' event).
  const onExit = () => killFromPidFile(dir);
  process.once('exit', onExit);
  const watchdog = startKafkaWatchdog('spanledger-kafka-watchdog', KAFKA_SH, dir, 'KAFKA_DIR="$dir" bash "$kafka_sh" down');

  let lastError: unknown;
  // A port found free may be taken before the broker binds it; then try other ports.
  for (let attempt = 1; attempt <= 3; attempt += 1) {
    const port = await freePort();
    let controllerPort = await freePort();
    while (controllerPort === port) controllerPort = await freePort();
    const env = { ...process.env, KAFKA_DIR: dir, KAFKA_PORT: String(port), KAFKA_CONTROLLER_PORT: String(controllerPort) };
    try {
      await runKafkaSh(['up'], env);
      const brokers = `127.0.0.1:${port}`;
      return {
        brokers,
        why: `started a local broker with scripts/kafka.sh on ${brokers} (KAFKA_DIR=${dir}; no KAFKA_BROKERS, no Docker engine)`,
        stop: async () => {
          try {
            await runKafkaSh(['down'], env);
          } finally {
            stopKafkaWatchdog(watchdog);
            process.off('exit', onExit);
            killFromPidFile(dir);
            await rm(dir, { recursive: true, force: true });
          }
        },
      };
    } catch (err) {
      lastError = err;
      await runKafkaSh(['down'], env).catch(() => {});
      if (!/in use/.test(String(err))) break;
    }
  }
  stopKafkaWatchdog(watchdog);
  process.off('exit', onExit);
  await rm(dir, { recursive: true, force: true });
  throw lastError;
}

function runKafkaSh(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolveRun, reject) => {
    const child = spawn('bash', [KAFKA_SH, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolveRun(output);
      else reject(new Error(`scripts/kafka.sh ${args.join(' ')} failed (${code ?? signal}):\n${output.slice(-6000)}`));
    });
  });
}

function killFromPidFile(dir: string): void {
  try {
    const pid = Number(readFileSync(join(dir, 'kafka.pid'), 'utf8').trim());
    if (pid > 0) process.kill(pid, 'SIGKILL');
  } catch {
    // no pid file or no such process: nothing to stop
  }
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {
    // best effort
  }
}


// ---------------------------------------------------------------------------------------------

/** Resolves once the cluster answers a metadata request from kafkajs, or rejects after timeoutMs. */
async function waitUntilAnswers(brokers: string, timeoutMs: number): Promise<void> {
  const kafka = new Kafka({
    clientId: 'spanledger-tests-setup',
    brokers: brokers.split(',').map((b) => b.trim()),
    logLevel: logLevel.NOTHING,
    connectionTimeout: 3_000,
    requestTimeout: 5_000,
    retry: { retries: 0 },
  });
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    const admin = kafka.admin();
    try {
      await admin.connect();
      await admin.listTopics();
      return;
    } catch (err) {
      lastError = err;
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      await admin.disconnect().catch(() => {});
    }
  }
  throw new Error(`Kafka at ${brokers} did not answer within ${timeoutMs / 1000} s: ${String(lastError)}`);
}
