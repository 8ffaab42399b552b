import { access } from 'node:fs/promises';
import { kernelLines, type KernelLine } from './lines.ts';
import { newestStockImage } from './stock.ts';

/** What `qcrash kernel list` says of a line: its stock kernel and source tarball, installed or how to install them. */
async function describeLine(line: KernelLine): Promise<string> {
  const image = await newestStockImage(line);
  const stock = image
    ? `${line.stockSpec} = ${image.slice('vmlinuz-'.length)}`
    : `${line.stockSpec} MISSING (apt-get install ${line.imagePackage})`;
  const hasSource = await access(line.tarball).then(
    () => true,
    () => false,
  );
  const source = hasSource ? `source ${line.tarball}` : `source MISSING (apt-get install ${line.sourcePackage})`;
  return `line ${line.name}\t${stock}\t${source}`;
}

export async function listKernelLines(): Promise<string[]> {
  return Promise.all(kernelLines.map(describeLine));
}
