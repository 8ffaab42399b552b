# qcrash in a container image: Debian 12 (bookworm) with Node.js 20, plus
# what .ci/install installs (QEMU, e2fsprogs, busybox, the stock cloud
# kernel, linux-source-6.1 and the kernel build tools) and the npm packages.
#
# BASE must be Debian 12 with Node.js 20 (Debian 12's own nodejs is 18). The
# default is Node's official bookworm image; `npm run image:build` builds a
# base from Debian's packages instead (mmdebstrap, imported into podman) and
# passes it as --build-arg BASE=...
ARG BASE=node:20-bookworm-slim
FROM ${BASE}

WORKDIR /opt/qcrash

# The dependencies first: a change to the code reuses the installed layer.
COPY .ci/install .ci/install
COPY package.json package-lock.json ./
RUN bash .ci/install && rm -rf /var/lib/apt/lists/* /root/.npm

COPY . .
# Fail the build, not the first run, when a program qcrash needs is missing.
RUN node bin/qcrash.js doctor

# Kernels, images, initramfs archives and saved VM states are
# content-addressed: point QCRASH_CACHE at a shared volume to share them.
ENV QCRASH_CACHE=/var/cache/qcrash
ENTRYPOINT ["node", "bin/qcrash.js"]
CMD ["run", "--help"]
