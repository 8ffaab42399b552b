#!/usr/bin/env node
// Builds the qcrash container image from Debian's packages alone, where no
// container registry is reachable: mmdebstrap makes a Debian 12 root file
// system, podman imports it as the base image, and podman builds the
// repository's Dockerfile on it (which runs .ci/install inside).
//
//   npm run image:build -- [--tag localhost/qcrash:latest] [--mirror URL] [--mode root|unshare|...] [--isolation chroot|oci] [--no-host-cas]
//
// Debian 12 ships Node.js 18 and qcrash needs 20, so the Node.js running this
// script (and its npm) is copied into the base. The base is cached per suite,
// package list and Node.js version under $QCRASH_CACHE/image (default
// ~/.cache/qcrash/image). Exits 3, saying what to install, when mmdebstrap or
// podman is missing.
import { $, which, fs, path, os, argv } from 'zx';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const suite = 'bookworm';
const tag = argv.tag ?? 'localhost/qcrash:latest';
const mirror = argv.mirror;
// Buildah's chroot isolation runs the Dockerfile's RUN steps without an OCI
// runtime: it works where crun cannot set up a container (here crun fails to
// set RLIMIT_NPROC), and on ordinary hosts too. --isolation oci for the default.
const isolation = argv.isolation ?? process.env.QCRASH_IMAGE_ISOLATION ?? 'chroot';
// mmdebstrap's root mode mounts /proc, /sys and /dev inside its temporary
// chroot (under $TMPDIR) while it installs and runs the hooks. In the host's
// mount namespace any other process that sits in one of them (a `grep -r` or
// `find` over /tmp, a shell cd'd there) makes mmdebstrap's umount fail with
// "target is busy", then its `rm` of the temporary chroot, and the mount stays
// behind. As root, run it in a private mount namespace: only mmdebstrap sees
// those mounts, and they go with it. --mode passes another mode to mmdebstrap
// as it is (unshare needs /etc/subuid and /etc/subgid entries for the user).
const mode = argv.mode;
const mmdebstrapIn = mode === undefined && process.getuid?.() === 0 ? ['unshare', '--mount', '--propagation', 'private'] : [];
// What .ci/install needs before it can run: bash, and certificates for npm's https.
const basePackages = ['bash', 'ca-certificates'];
// Certificate authorities this host added to its trust store (Debian keeps
// them in /usr/local/share/ca-certificates): behind a TLS-intercepting proxy
// npm ci inside the build fails without them. --no-host-cas leaves them out.
const hostCaDir = '/usr/local/share/ca-certificates';

function fail(code, message) {
  process.stderr.write(`build-image: ${message}\n`);
  process.exit(code);
}

const tools = [
  { program: 'mmdebstrap', debian: 'mmdebstrap', why: 'makes the Debian 12 root file system' },
  { program: 'podman', debian: 'podman', why: 'imports it and builds the Dockerfile' },
];
const missing = [];
for (const t of tools) if (!(await which(t.program, { nothrow: true }))) missing.push(t);
if (missing.length) {
  fail(
    3,
    `cannot build the qcrash image: ${missing.map((t) => `${t.program} (${t.why}) is not installed`).join(', and ')}.\n` +
      `Install it with: apt-get install ${missing.map((t) => t.debian).join(' ')}\n` +
      `(With a registry at hand, \`podman build .\` or \`docker build .\` builds the same Dockerfile on node:20-bookworm-slim.)`,
  );
}
if (Number(process.versions.node.split('.')[0]) < 20)
  fail(3, `Node.js ${process.version} runs this script; the image needs Node.js 20 or later, copied from here`);

$.verbose = true;
const npmDir = path.join((await $({ verbose: false })`npm root -g`).stdout.trim(), 'npm');
if (!(await fs.pathExists(path.join(npmDir, 'bin', 'npm-cli.js'))))
  fail(3, `npm not found at ${npmDir} (npm root -g): the image needs it for .ci/install's npm ci`);
const npmVersion = (await fs.readJson(path.join(npmDir, 'package.json'))).version;

const hostCas =
  argv['host-cas'] === false || !(await fs.pathExists(hostCaDir))
    ? []
    : (await fs.readdir(hostCaDir))
        .filter((f) => f.endsWith('.crt'))
        .sort()
        .map((f) => path.join(hostCaDir, f));
const caHash = createHash('sha256');
for (const f of hostCas) caHash.update(await fs.readFile(f));
const key = createHash('sha256')
  .update(
    JSON.stringify({
      suite,
      mirror: mirror ?? null,
      basePackages,
      node: process.version,
      npm: npmVersion,
      cas: caHash.digest('hex'),
    }),
  )
  .digest('hex')
  .slice(0, 12);
const cache = path.join(process.env.QCRASH_CACHE ?? path.join(os.homedir(), '.cache', 'qcrash'), 'image');
const baseTar = path.join(cache, `debian-${suite}-node${process.versions.node}-${key}.tar`);
const baseImage = `localhost/qcrash-base:${suite}-node${process.versions.node}-${key}`;

if (!(await fs.pathExists(baseTar))) {
  await fs.mkdirp(cache);
  const partial = path.join(cache, `partial-${process.pid}-${path.basename(baseTar)}`);
  const cleanUp = () => fs.removeSync(partial);
  process.once('SIGINT', () => (cleanUp(), process.exit(130)));
  process.once('SIGTERM', () => (cleanUp(), process.exit(143)));
  try {
    // --format=tar: mmdebstrap guesses the format from the name, and a partial name does not end in .tar.
    await $`${mmdebstrapIn} mmdebstrap ${mode ? [`--mode=${mode}`] : []} --variant=apt --format=tar --include=${basePackages.join(',')} ${[
      `--customize-hook=copy-in ${process.execPath} /usr/local/bin`,
      '--customize-hook=mkdir -p "$1/usr/local/lib/node_modules"',
      `--customize-hook=copy-in ${npmDir} /usr/local/lib/node_modules`,
      '--customize-hook=ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/local/bin/npm"',
      '--customize-hook=ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/local/bin/npx"',
      ...(hostCas.length
        ? [`--customize-hook=copy-in ${hostCas.join(' ')} ${hostCaDir}`, '--customize-hook=chroot "$1" update-ca-certificates']
        : []),
      '--customize-hook=chroot "$1" node --version',
    ]} ${suite} ${partial} ${mirror ? [mirror] : []}`;
    await fs.rename(partial, baseTar);
  } finally {
    cleanUp();
  }
}

if ((await $({ nothrow: true, verbose: false })`podman image exists ${baseImage}`).exitCode !== 0) {
  // Node.js trusts its own CA bundle, not the system's, unless told: the host's extra CAs are in the system's.
  const caEnv = hostCas.length ? ['--change', 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt'] : [];
  await $`podman import --change ${'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'} ${caEnv} --change ${'CMD ["/bin/bash"]'} ${baseTar} ${baseImage}`;
}

await $`podman build --isolation=${isolation} --network=host --build-arg ${`BASE=${baseImage}`} --tag ${tag} --file ${path.join(repo, 'Dockerfile')} ${repo}`;
const size = (await $({ verbose: false })`podman image inspect --format ${'{{.Size}}'} ${tag}`).stdout.trim();
process.stdout.write(`build-image: built ${tag} on ${baseImage} (${(Number(size) / 2 ** 20).toFixed(0)} MiB)\n`);
