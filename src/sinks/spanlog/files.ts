import fsp from 'node:fs/promises';

/**
 * The file operations the span log sink uses, and nothing more: node:fs/promises by default,
 * a fault-injecting layer in tests. `fsp.FileHandle` fits `FileHandleLike` as it is.
 */
export interface SpanLogFiles {
  /** 'wx': create a new file (O_EXCL); 'r+': read and write an existing one; 'r': read (also a folder, to fsync it). */
  open(path: string, flags: 'wx' | 'r+' | 'r'): Promise<FileHandleLike>;
  /** mkdir -p; resolves to the first folder it created (undefined: it existed). */
  mkdir(path: string): Promise<string | undefined>;
  readdir(path: string): Promise<string[]>;
  rm(path: string): Promise<void>;
}

export interface FileHandleLike {
  /** May write fewer bytes than asked (ENOSPC mid-buffer): callers check bytesWritten. */
  write(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  stat(): Promise<{ size: number }>;
  truncate(length: number): Promise<void>;
  datasync(): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
}

export const nodeFiles: SpanLogFiles = {
  open: (path, flags) => fsp.open(path, flags),
  mkdir: (path) => fsp.mkdir(path, { recursive: true }),
  readdir: (path) => fsp.readdir(path),
  rm: (path) => fsp.rm(path),
};
