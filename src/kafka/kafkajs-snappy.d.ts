// kafkajs-snappy ships no types: a factory of a kafkajs codec.
declare module 'kafkajs-snappy' {
  export default function snappyCodec(): {
    compress(encoder: { buffer: Buffer }): Promise<Buffer>;
    decompress(data: Buffer): Promise<Buffer>;
  };
}
