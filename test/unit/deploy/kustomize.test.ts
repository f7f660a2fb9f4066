import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { archiveSettings, kafkaSettings, ruleSettings, ruleWorkerSettings, signalSettings, spanSettings, workerSettings, type Setting } from '../../../src/config/settings.js';
import { CHECKPOINT_MAX_MESSAGE_BYTES } from '../../../src/kafka/checkpoint-store.js';
import { DLQ_HEADER_ROOM_BYTES } from '../../../src/kafka/topics.js';

/**
 * Renders the Kubernetes manifests (deploy/k8s) with scripts/kustomize.sh and checks them against
 * the code: every env var is a setting with a valid value, probes and ports match METRICS_PORT,
 * the grace period outlasts SHUTDOWN_TIMEOUT_MS, every topic a worker uses is a KafkaTopic with the
 * right cleanup policy and sizes, autoscaling stays within partitions and watches the worker's own
 * group and topic, PDBs and volumes point at things that exist. No cluster is needed.
 */
const ROOT = path.resolve(import.meta.dirname, '../../..');
const KUSTOMIZATIONS = ['deploy/k8s/base', 'deploy/k8s/overlays/example'];
/** scripts/kustomize.sh's exit code when neither kubectl, kustomize nor go is on PATH. */
const NO_RENDERER = 3;
/** The first render may build kustomize with go install: 2 min 32 s measured on the busy 2-core machine, modules not cached. */
const RENDER_TIMEOUT_MS = 10 * 60_000;

/** Environment variables of the manifests that are not spanledger settings, and why they are there. */
const NOT_SETTINGS: Record<string, string> = {
  NODE_OPTIONS: 'V8 heap cap of the span workers; Node cannot change it from inside (bench/README.md)',
  POD_IP: 'the pod\'s IP from the downward API, for STATUS_ADVERTISE_ADDRESS',
  AWS_REGION: 'the archive workers\' region, read by the AWS SDK\'s standard chain, not by spanledger',
};

/** What the downward API would give a pod, to check the settings built from it. */
const DOWNWARD_API: Record<string, string> = { 'status.podIP': '10.1.2.3', 'metadata.name': 'spanledger-span-workers-5d8f7c9b6-x2kqp' };

const SETTINGS = new Map<string, Setting>(
  [kafkaSettings, workerSettings, spanSettings, signalSettings, ruleSettings, ruleWorkerSettings, archiveSettings].flatMap((table) => Object.values(table).map((s): [string, Setting] => [s.env, s])),
);

/** What each `worker <role>` consumes, produces and stores, as env var names of settings. */
const ROLES = {
  spans: { group: 'SPANS_GROUP', reads: 'SPANS_TOPIC', topics: ['SPANS_TOPIC', 'SPANS_DLQ_TOPIC'], sharedDirs: ['SPANLOG_DIR'] },
  rules: { group: 'RULES_GROUP', reads: 'SPANS_TOPIC', topics: ['SPANS_TOPIC', 'RULES_DLQ_TOPIC', 'RULES_TOPIC', 'RULES_CHECKPOINT_TOPIC', 'SIGNALS_TOPIC'], sharedDirs: [] },
  signals: { group: 'SIGNALS_GROUP', reads: 'SIGNALS_TOPIC', topics: ['SIGNALS_TOPIC', 'SIGNALS_DLQ_TOPIC'], sharedDirs: ['DUCKDB_DIR'] },
  archive: { group: 'ARCHIVE_GROUP', reads: 'SPANS_TOPIC', topics: ['SPANS_TOPIC', 'ARCHIVE_DLQ_TOPIC'], sharedDirs: [] },
} as const;
type Role = keyof typeof ROLES;
const COMPACTED_TOPICS = ['RULES_TOPIC', 'RULES_CHECKPOINT_TOPIC'];
/** Dead-letter topic → the topic its records come from. */
const DEAD_LETTERS_OF: Record<string, string> = { SPANS_DLQ_TOPIC: 'SPANS_TOPIC', RULES_DLQ_TOPIC: 'SPANS_TOPIC', SIGNALS_DLQ_TOPIC: 'SIGNALS_TOPIC', ARCHIVE_DLQ_TOPIC: 'SPANS_TOPIC' };

// Just the fields these checks read.
interface Resource {
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: any; // each kind has its own shape; every check reads the few fields it needs
  data?: Record<string, string>;
}
interface Container {
  name: string;
  args?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: { configMapKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } } }>;
  envFrom?: Array<{ configMapRef?: { name: string } }>;
  ports?: Array<{ name?: string; containerPort: number }>;
  livenessProbe?: { httpGet?: { path: string; port: number | string } };
  readinessProbe?: { httpGet?: { path: string; port: number | string } };
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}

type Rendered = { ok: true; resources: Resource[] } | { ok: false; skipReason: string };

async function render(dir: string): Promise<Rendered> {
  try {
    const { stdout } = await promisify(execFile)('bash', [path.join(ROOT, 'scripts/kustomize.sh'), dir], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024, timeout: RENDER_TIMEOUT_MS });
    const resources = parseAllDocuments(stdout).map((doc) => doc.toJS() as Resource);
    return { ok: true, resources };
  } catch (e) {
    const failure = e as { code?: number; stderr?: string };
    if (failure.code === NO_RENDERER) return { ok: false, skipReason: String(failure.stderr).trim() };
    throw new Error(`scripts/kustomize.sh ${dir} failed (exit ${failure.code}): ${failure.stderr}`);
  }
}

class Manifests {
  constructor(readonly resources: Resource[]) {}

  ofKind(kind: string): Resource[] {
    return this.resources.filter((r) => r.kind === kind);
  }

  named(kind: string, name: string): Resource | undefined {
    return this.resources.find((r) => r.kind === kind && r.metadata.name === name);
  }

  /** A container's environment as the kubelet builds it: envFrom ConfigMaps, then env entries. */
  environment(container: Container): Map<string, string> {
    const env = new Map<string, string>();
    for (const from of container.envFrom ?? []) {
      const name = from.configMapRef?.name;
      const configMap = name === undefined ? undefined : this.named('ConfigMap', name);
      expect(configMap, `envFrom ConfigMap ${name} of ${container.name}`).toBeDefined();
      for (const [key, value] of Object.entries(configMap!.data ?? {})) env.set(key, value);
    }
    for (const entry of container.env ?? []) {
      const ref = entry.valueFrom?.configMapKeyRef;
      const field = entry.valueFrom?.fieldRef?.fieldPath;
      let value = ref !== undefined ? this.named('ConfigMap', ref.name)?.data?.[ref.key] : field !== undefined ? DOWNWARD_API[field] : entry.value;
      expect(value, `value of ${entry.name} in ${container.name}`).toBeDefined();
      // Kubernetes expands $(NAME) from the variables defined before it.
      value = value!.replace(/\$\(([A-Z_][A-Z0-9_]*)\)/g, (whole, name: string) => env.get(name) ?? whole);
      env.set(entry.name, value);
    }
    return env;
  }

  /** The KafkaTopic resource of a Kafka topic name (Strimzi: spec.topicName, else the resource name). */
  kafkaTopic(topic: string): Resource | undefined {
    return this.ofKind('KafkaTopic').find((t) => (t.spec.topicName ?? t.metadata.name) === topic);
  }
}

interface Worker {
  deployment: Resource;
  container: Container;
  role: Role;
  env: Map<string, string>;
  /** A setting's value for this worker: its environment, else the setting's default. */
  setting(envName: string): string;
}

function workersOf(manifests: Manifests): Worker[] {
  return [...manifests.ofKind('StatefulSet'), ...manifests.ofKind('Deployment')].map((deployment) => {
    const containers = deployment.spec.template.spec.containers as Container[];
    expect(containers, `containers of ${deployment.metadata.name}`).toHaveLength(1);
    const container = containers[0]!;
    const [command, role] = container.args ?? [];
    expect(command, `${deployment.metadata.name}: args`).toBe('worker');
    expect(Object.keys(ROLES), `${deployment.metadata.name}: worker role`).toContain(role);
    const env = manifests.environment(container);
    return {
      deployment,
      container,
      role: role as Role,
      env,
      setting: (envName: string) => env.get(envName) ?? SETTINGS.get(envName)!.default,
    };
  });
}

/** The container port a probe targets (a number, or the name of one of the container's ports). */
function probePort(container: Container, port: number | string): number | undefined {
  return typeof port === 'number' ? port : container.ports?.find((p) => p.name === port)?.containerPort;
}

function matches(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.entries(selector).every(([key, value]) => labels?.[key] === value);
}

const rendered = new Map<string, Rendered>();

beforeAll(async () => {
  for (const dir of KUSTOMIZATIONS) {
    const result = await render(dir);
    rendered.set(dir, result);
    if (!result.ok) {
      console.log(`*** Kubernetes manifest checks skipped: ${result.skipReason} ***`);
      return;
    }
  }
}, RENDER_TIMEOUT_MS);

describe.each(KUSTOMIZATIONS)('Kubernetes manifests of %s', (dir) => {
  let manifests: Manifests;
  let workers: Worker[];

  beforeAll(() => {
    const result = rendered.get(dir);
    if (!result?.ok) return;
    manifests = new Manifests(result.resources);
    workers = workersOf(manifests);
  });

  it('has one StatefulSet per worker role, a Deployment for the stateless archive workers', (ctx) => {
    if (workers === undefined) return ctx.skip();
    expect(workers.map((w) => w.role).sort()).toEqual(Object.keys(ROLES).sort());
    for (const w of workers) expect(w.deployment.kind, `${w.deployment.metadata.name}: kind`).toBe(w.role === 'archive' ? 'Deployment' : 'StatefulSet');
  });

  it('gives each StatefulSet worker its stable pod name as its static group member id, and the archive Deployment none (its pod names do not come back)', (ctx) => {
    if (workers === undefined) return ctx.skip();
    for (const { deployment, container } of workers) {
      const instanceId = container.env?.find((e) => e.name === 'KAFKA_GROUP_INSTANCE_ID');
      if (deployment.kind === 'Deployment') {
        expect(instanceId, `${deployment.metadata.name}: KAFKA_GROUP_INSTANCE_ID`).toBeUndefined();
        expect(deployment.spec.strategy?.rollingUpdate?.maxUnavailable, `${deployment.metadata.name}: a rollout surges`).toBe(0);
        expect(deployment.spec.updateStrategy, `${deployment.metadata.name}: no StatefulSet field`).toBeUndefined();
        continue;
      }
      expect(instanceId?.valueFrom, `${deployment.metadata.name}: KAFKA_GROUP_INSTANCE_ID`).toEqual({ fieldRef: { fieldPath: 'metadata.name' } });
      expect(deployment.spec.serviceName, `${deployment.metadata.name}: serviceName`).toBeTruthy();
      expect(deployment.spec.updateStrategy?.type, `${deployment.metadata.name}: rollout`).toBe('RollingUpdate');
    }
  });

  it('sets only known settings, each with a value its schema accepts', (ctx) => {
    if (workers === undefined) return ctx.skip();
    for (const worker of workers) {
      for (const [name, value] of worker.env) {
        if (name in NOT_SETTINGS) continue;
        const setting = SETTINGS.get(name);
        expect(setting, `${worker.deployment.metadata.name}: ${name} is not a setting of src/config/settings.ts`).toBeDefined();
        const parsed = setting!.schema.safeParse(value);
        expect(parsed.success, `${worker.deployment.metadata.name}: ${name}=${JSON.stringify(value)}: ${parsed.error?.issues[0]?.message}`).toBe(true);
      }
    }
  });

  it('probes /healthz and /readyz, exposes and annotates METRICS_PORT', (ctx) => {
    if (workers === undefined) return ctx.skip();
    for (const { deployment, container, setting } of workers) {
      const metricsPort = Number(setting('METRICS_PORT'));
      expect(metricsPort, `${deployment.metadata.name}: METRICS_PORT 0 picks a free port no probe can know`).toBeGreaterThan(0);
      expect(container.livenessProbe?.httpGet?.path).toBe('/healthz');
      expect(container.readinessProbe?.httpGet?.path).toBe('/readyz');
      expect(probePort(container, container.livenessProbe!.httpGet!.port)).toBe(metricsPort);
      expect(probePort(container, container.readinessProbe!.httpGet!.port)).toBe(metricsPort);
      expect(container.ports?.map((p) => p.containerPort)).toContain(metricsPort);
      const annotations = deployment.spec.template.metadata.annotations ?? {};
      expect(annotations['prometheus.io/scrape']).toBe('true');
      expect(Number(annotations['prometheus.io/port'])).toBe(metricsPort);
      expect(annotations['prometheus.io/path']).toBe('/metrics');
    }
  });

  it('gives a graceful stop longer than SHUTDOWN_TIMEOUT_MS, set explicitly', (ctx) => {
    if (workers === undefined) return ctx.skip();
    for (const { deployment, env, setting } of workers) {
      expect(env.has('SHUTDOWN_TIMEOUT_MS'), `${deployment.metadata.name} sets SHUTDOWN_TIMEOUT_MS`).toBe(true);
      expect(deployment.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThan(Number(setting('SHUTDOWN_TIMEOUT_MS')) / 1000);
    }
  });

  it('declares a KafkaTopic for every topic a worker reads or writes, compacted where the code compacts', (ctx) => {
    if (workers === undefined) return ctx.skip();
    for (const worker of workers) {
      for (const topicSetting of ROLES[worker.role].topics) {
        const topic = worker.setting(topicSetting);
        const resource = manifests.kafkaTopic(topic);
        expect(resource, `${worker.deployment.metadata.name}: KafkaTopic for ${topicSetting}=${topic}`).toBeDefined();
        const policy = resource!.spec.config?.['cleanup.policy'] ?? 'delete';
        // Compacting spans or signals would drop records that share a key (a trace id, a tenant).
        expect(policy, `cleanup.policy of ${topic}`).toBe(COMPACTED_TOPICS.includes(topicSetting) ? 'compact' : 'delete');
      }
    }
  });

  it('sizes dead-letter topics for their source records plus 64 KiB of headers, checkpoints for 16 MiB', (ctx) => {
    if (workers === undefined) return ctx.skip();
    const maxMessageBytes = (topic: string) => Number(manifests.kafkaTopic(topic)!.spec.config?.['max.message.bytes'] ?? 1048588);
    for (const worker of workers) {
      for (const topicSetting of ROLES[worker.role].topics) {
        const source = DEAD_LETTERS_OF[topicSetting];
        if (source === undefined) continue;
        const dlqBytes = maxMessageBytes(worker.setting(topicSetting));
        expect(dlqBytes, `max.message.bytes of ${worker.setting(topicSetting)}`).toBeGreaterThanOrEqual(maxMessageBytes(worker.setting(source)) + DLQ_HEADER_ROOM_BYTES);
        // MAX_MESSAGE_BYTES bounds a record's value; the topic must take such a record at all.
        expect(Number(worker.setting('MAX_MESSAGE_BYTES'))).toBeLessThan(maxMessageBytes(worker.setting(source)));
      }
      if (worker.role === 'rules') expect(maxMessageBytes(worker.setting('RULES_CHECKPOINT_TOPIC'))).toBeGreaterThanOrEqual(CHECKPOINT_MAX_MESSAGE_BYTES);
    }
  });

  it('scales each group on its own lag, never past the partitions of the topic it reads', (ctx) => {
    if (workers === undefined) return ctx.skip();
    const scaledObjects = manifests.ofKind('ScaledObject');
    for (const worker of workers) {
      const name = worker.deployment.metadata.name;
      const partitions = manifests.kafkaTopic(worker.setting(ROLES[worker.role].reads))!.spec.partitions as number;
      expect(worker.deployment.spec.replicas ?? 1, `${name}: replicas`).toBeLessThanOrEqual(partitions);
      const targeting = scaledObjects.filter((s) => s.spec.scaleTargetRef.name === name);
      expect(targeting, `ScaledObjects of ${name}`).toHaveLength(1);
      const { spec } = targeting[0]!;
      // KEDA scales a Deployment unless told otherwise.
      expect(spec.scaleTargetRef.kind ?? 'Deployment', `ScaledObject of ${name}: target kind`).toBe(worker.deployment.kind);
      expect(spec.minReplicaCount).toBeGreaterThanOrEqual(1);
      expect(spec.maxReplicaCount).toBeGreaterThanOrEqual(spec.minReplicaCount);
      expect(spec.maxReplicaCount, `${name}: maxReplicaCount against ${partitions} partitions`).toBeLessThanOrEqual(partitions);
      expect(spec.triggers).toHaveLength(1);
      const [trigger] = spec.triggers;
      expect(trigger.type).toBe('kafka');
      expect(trigger.metadata).toMatchObject({
        bootstrapServers: worker.setting('KAFKA_BROKERS'),
        consumerGroup: worker.setting(ROLES[worker.role].group),
        topic: worker.setting(ROLES[worker.role].reads),
        excludePersistentLag: 'true',
        // The workers start a new group at the beginning of the topic (subscribe fromBeginning).
        offsetResetPolicy: 'earliest',
      });
      expect(trigger.metadata.lagThreshold).toMatch(/^[1-9]\d*$/);
    }
    expect(scaledObjects).toHaveLength(workers.length);
  });

  it('has a PodDisruptionBudget for every worker StatefulSet, each selecting one', (ctx) => {
    if (workers === undefined) return ctx.skip();
    const budgets = manifests.ofKind('PodDisruptionBudget');
    for (const budget of budgets) {
      const selected = workers.filter((w) => matches(budget.spec.selector.matchLabels, w.deployment.spec.template.metadata.labels));
      expect(selected.map((w) => w.deployment.metadata.name), `StatefulSets selected by PDB ${budget.metadata.name}`).toHaveLength(1);
    }
    for (const { deployment } of workers) {
      expect(budgets.some((b) => matches(b.spec.selector.matchLabels, deployment.spec.template.metadata.labels)), `PDB for ${deployment.metadata.name}`).toBe(true);
    }
  });

  it('keeps archive workers stateless: no PersistentVolumeClaim, scratch on an emptyDir', (ctx) => {
    if (workers === undefined) return ctx.skip();
    const archive = workers.filter((w) => w.role === 'archive');
    expect(archive).toHaveLength(1);
    for (const worker of archive) {
      const volumes = (worker.deployment.spec.template.spec.volumes ?? []) as Array<{ name: string; persistentVolumeClaim?: unknown; emptyDir?: unknown }>;
      expect(volumes.filter((v) => v.persistentVolumeClaim !== undefined)).toEqual([]);
      expect(worker.deployment.spec.volumeClaimTemplates).toBeUndefined();
      const scratch = worker.container.volumeMounts?.find((m) => worker.setting('ARCHIVE_SCRATCH_DIR').startsWith(`${m.mountPath}/`) || worker.setting('ARCHIVE_SCRATCH_DIR') === m.mountPath);
      expect(volumes.find((v) => v.name === scratch?.name)?.emptyDir, 'ARCHIVE_SCRATCH_DIR on an emptyDir').toBeDefined();
    }
  });

  it('mounts only declared volumes and claims, keeps shared folders on ReadWriteMany claims', (ctx) => {
    if (workers === undefined) return ctx.skip();
    for (const worker of workers) {
      const name = worker.deployment.metadata.name;
      const volumes = (worker.deployment.spec.template.spec.volumes ?? []) as Array<{ name: string; persistentVolumeClaim?: { claimName: string } }>;
      const mounts = worker.container.volumeMounts ?? [];
      for (const mount of mounts) expect(volumes.map((v) => v.name), `${name}: volume of mount ${mount.mountPath}`).toContain(mount.name);
      for (const volume of volumes) {
        if (volume.persistentVolumeClaim === undefined) continue;
        expect(manifests.named('PersistentVolumeClaim', volume.persistentVolumeClaim.claimName), `${name}: claim ${volume.persistentVolumeClaim.claimName}`).toBeDefined();
      }
      const mountOf = (dir: string) => mounts.find((m) => m.mountPath === dir);
      // Dead letters the dead-letter topic refuses go to disk: not into the image's writable layer.
      expect(mountOf(worker.setting('QUARANTINE_DIR')), `${name}: QUARANTINE_DIR on a volume`).toBeDefined();
      for (const dirSetting of ROLES[worker.role].sharedDirs) {
        const mount = mountOf(worker.setting(dirSetting));
        expect(mount, `${name}: ${dirSetting} on a volume`).toBeDefined();
        const claimName = volumes.find((v) => v.name === mount!.name)?.persistentVolumeClaim?.claimName;
        expect(claimName, `${name}: ${dirSetting} on a PersistentVolumeClaim`).toBeDefined();
        // Every worker of the group reads the others' files there (locks, recovery, handovers).
        expect(manifests.named('PersistentVolumeClaim', claimName!)!.spec.accessModes).toEqual(['ReadWriteMany']);
      }
    }
  });
});
