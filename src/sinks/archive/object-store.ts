import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, HeadBucketCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { classifyS3Error } from './classify.js';

/** Where the archive is: ARCHIVE_ENDPOINT, ARCHIVE_BUCKET, path-style; credentials and region from the AWS chain. */
export interface ObjectStoreConfig {
  /** Empty: the AWS endpoint of the region. */
  endpoint: string;
  bucket: string;
  forcePathStyle: boolean;
  /** A call not answered in this time fails (retriable). */
  requestTimeoutMs: number;
  /** Objects larger than this go up in parts of this size (multipart, at least 5 MiB). */
  partSizeBytes: number;
}

export interface StoredObject {
  key: string;
  size: number;
  /** Changes whenever the object is replaced (a replayed cycle): the download cache's key. */
  etag: string;
  lastModified: Date | undefined;
}

/**
 * The bucket, through AWS SDK v3: every failure leaves here typed by classifyS3Error. The client
 * takes credentials and region from the standard chain (AWS_* variables, AWS_PROFILE and its
 * files, web identity, instance metadata).
 */
export class ObjectStore {
  readonly client: S3Client;

  constructor(readonly config: ObjectStoreConfig) {
    this.client = new S3Client({
      ...(config.endpoint === '' ? {} : { endpoint: config.endpoint }),
      forcePathStyle: config.forcePathStyle,
      requestHandler: { connectionTimeout: Math.min(5_000, config.requestTimeoutMs), requestTimeout: config.requestTimeoutMs },
      // One attempt per call: the pipeline retries with backoff and its circuit breaker counts each failure.
      maxAttempts: 1,
    });
  }

  get bucket(): string {
    return this.config.bucket;
  }

  /** The bucket answers and these credentials may use it. */
  async checkBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (e) {
      throw classifyS3Error(`HEAD bucket ${this.bucket}`, e);
    }
  }

  /**
   * Uploads a local file under `key`, replacing any object of that name (S3 writes are atomic per
   * key: readers see the old or the new object, never a mix). Small files in one PUT, larger ones
   * in parts; `signal` aborts the upload (and its multipart upload) at once.
   */
  async putFile(key: string, file: string, signal?: AbortSignal, metadata: Record<string, string> = {}): Promise<number> {
    const { size } = await fsp.stat(file);
    const abortController = new AbortController();
    const onAbort = () => abortController.abort(signal?.reason);
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const params = { Bucket: this.bucket, Key: key, ContentLength: size, ContentType: 'application/vnd.apache.parquet', Metadata: metadata };
    try {
      if (size <= this.config.partSizeBytes) {
        // One part at most: a plain PUT of the file's bytes (lib-storage's Upload costs about half
        // as much CPU again per object, which counts when a cycle writes an object per tenant-day).
        const body = await fsp.readFile(file, { signal: abortController.signal });
        await this.client.send(new PutObjectCommand({ ...params, Body: body }), { abortSignal: abortController.signal });
        return size;
      }
      const upload = new Upload({
        client: this.client,
        params: { ...params, Body: fs.createReadStream(file) },
        partSize: this.config.partSizeBytes,
        queueSize: 1,
        leavePartsOnError: false,
        abortController,
      });
      await upload.done();
      return size;
    } catch (e) {
      throw classifyS3Error(`PUT ${key}`, abortController.signal.aborted ? Object.assign(new Error('aborted'), { name: 'AbortError', cause: e }) : e);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Every object under `prefix` (paged), in key order. */
  async *list(prefix: string): AsyncGenerator<StoredObject> {
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }));
      } catch (e) {
        throw classifyS3Error(`LIST ${prefix}`, e);
      }
      for (const o of page.Contents ?? []) if (o.Key !== undefined) yield { key: o.Key, size: o.Size ?? 0, etag: (o.ETag ?? '').replace(/"/g, ''), lastModified: o.LastModified };
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  /** The user metadata of `key` (x-amz-meta-*, lower-case names). */
  async metadata(key: string): Promise<Record<string, string>> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return head.Metadata ?? {};
    } catch (e) {
      throw classifyS3Error(`HEAD ${key}`, e);
    }
  }

  /** Downloads `key` to `file` (through a temporary name: a file there is always whole). */
  async download(key: string, file: string): Promise<void> {
    await fsp.mkdir(path.dirname(file), { recursive: true });
    const partial = `${file}.${process.pid}.partial`;
    try {
      const answer = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      await pipeline(answer.Body as NodeJS.ReadableStream, fs.createWriteStream(partial));
      await fsp.rename(partial, file);
    } catch (e) {
      await fsp.rm(partial, { force: true });
      throw classifyS3Error(`GET ${key}`, e);
    }
  }

  close(): void {
    this.client.destroy();
  }
}
