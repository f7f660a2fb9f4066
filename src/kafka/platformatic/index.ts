import type { GroupConsumerOptions, KafkaAdmin, KafkaFacade, KafkaFacadeOptions, ProducerOptions, RecordProducer } from '../facade.js';
import type { GroupConsumer } from '../../pipeline/consumer-port.js';
import { PlatformaticAdmin } from './admin.js';
import { PlatformaticGroupConsumer } from './group-consumer.js';
import { PlatformaticProducer } from './producer.js';

/**
 * The @platformatic/kafka implementation of the Kafka facade (the default client). Each call
 * makes a new client; the caller connects and disconnects it.
 */
export function createPlatformaticFacade(options: KafkaFacadeOptions): KafkaFacade {
  return {
    kind: 'platformatic',
    groupConsumer: (o: GroupConsumerOptions): GroupConsumer => new PlatformaticGroupConsumer(options, o),
    producer: (o: ProducerOptions): RecordProducer => new PlatformaticProducer(options, o),
    admin: (): KafkaAdmin => new PlatformaticAdmin(options),
  };
}
