/**
 * What a base image holds, recorded when it is built: the content oracle
 * compares every recovered file against this.
 */
import type { BlockMap } from './block-map.ts';

export type MappingKind = 'blocks' | 'extents' | 'inline' | 'fast-symlink' | 'none';

export interface ManifestEntry {
  /** Absolute path inside the filesystem, e.g. "/shapes/dind-first". */
  path: string;
  type: 'file' | 'dir' | 'symlink';
  /** Named shape from the recipe (e.g. "direct-12"), for reports. */
  shape?: string;
  size: number;
  /** sha256 of the file's bytes (files) or of the link target (symlinks). */
  sha256?: string;
  target?: string;
  ino: number;
  mapping: MappingKind;
  /** Number of data blocks actually allocated (holes excluded), from debugfs. */
  dataBlocks?: number;
  /** The physical block map debugfs read back from the built image (absent in manifests of builder version < 3). */
  blockMap?: BlockMap;
}

export interface Manifest {
  recipe: string;
  recipeHash: string;
  blockSize: number;
  features: string[];
  entries: ManifestEntry[];
}
