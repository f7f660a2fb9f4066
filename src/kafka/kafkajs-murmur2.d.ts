// kafkajs' murmur2 (the Java-compatible hash of its DefaultPartitioner), a file of its package
// without types of its own.
declare module 'kafkajs/src/producer/partitioners/default/murmur2.js' {
  export default function murmur2(key: Buffer | string): number;
}
