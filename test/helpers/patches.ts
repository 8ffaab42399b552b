/**
 * Patches the kernel tests share. A built kernel is cached by the hashes of
 * source, patch texts and config, so the same text in two tests is one
 * kernel: test/kernel/mutants.test.ts validates the comment-only patch, and
 * test/kernel/series.test.ts starts its series with it, so that series' first
 * kernel is a cache hit when the mutants test ran first (and the other way round).
 */
export const commentOnlyPatch = [
  'From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001',
  'From: qcrash <qcrash@localhost>',
  'Date: Tue, 24 Nov 2026 12:00:00 +0000',
  'Subject: [PATCH] ext4: comment the migration entry point',
  '',
  '---',
  '--- a/fs/ext4/migrate.c',
  '+++ b/fs/ext4/migrate.c',
  '@@ -1,3 +1,4 @@',
  ' // SPDX-License-Identifier: LGPL-2.1',
  '+/* qcrash: a comment-only change */',
  ' /*',
  '  * Copyright IBM Corporation, 2007',
  '',
].join('\n');
