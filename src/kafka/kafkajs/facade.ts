import type { GroupConsumer } from '../../pipeline/consumer-port.js';
import type { GroupConsumerOptions, KafkaAdmin, KafkaFacade, KafkaFacadeOptions, ProducerOptions, RecordProducer } from '../facade.js';
import { KafkaJsAdmin } from './admin.js';
import { KafkaJsGroupConsumer } from './group-consumer.js';
import { BOUNDED_RETRY, createKafka } from './kafka.js';
import { KafkaJsRecordProducer } from './producer.js';

/**
 * The facade on kafkajs (KAFKA_CLIENT=kafkajs): one kafkajs client, its consumers, producers and
 * admin clients. kafkajs has neither KIP-429 cooperative rebalancing nor KIP-345 static
 * membership: a group consumer asked for 'cooperative' runs eager (with one warning per worker:
 * KAFKA_REBALANCE_PROTOCOL defaults to cooperative), one asked for a group instance id is refused
 * (the settings refuse KAFKA_GROUP_INSTANCE_ID with kafkajs at start already).
 */
export function createKafkaJsFacade(options: KafkaFacadeOptions): KafkaFacade {
  const kafka = createKafka(options);
  // Settings only (no connection until a producer connects): bounded producers connect within seconds.
  const boundedKafka = createKafka(options, BOUNDED_RETRY);
  return {
    kind: 'kafkajs',
    groupConsumer(consumer: GroupConsumerOptions): GroupConsumer {
      if (consumer.groupInstanceId !== undefined && consumer.groupInstanceId !== '') {
        throw new Error(`static membership (group instance id ${consumer.groupInstanceId}) needs KAFKA_CLIENT=platformatic: kafkajs does not have it`);
      }
      if (consumer.rebalanceProtocol === 'cooperative') {
        options.logger.warn({ group: consumer.group }, 'KAFKA_REBALANCE_PROTOCOL=cooperative: kafkajs knows only the eager protocol, so this group rebalances eagerly (every partition stops); set KAFKA_REBALANCE_PROTOCOL=eager to silence this');
      }
      return new KafkaJsGroupConsumer(kafka, consumer);
    },
    producer(producer: ProducerOptions): RecordProducer {
      return new KafkaJsRecordProducer(producer.delivery === 'bounded' ? boundedKafka : kafka, producer);
    },
    admin(): KafkaAdmin {
      return new KafkaJsAdmin(kafka);
    },
  };
}
