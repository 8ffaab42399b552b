import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/**
 * Debian's chromium, headless, through playwright-core (its own browser
 * downloads cannot work here). The machine has no network: these flags keep
 * chromium from trying (and hanging on) connections of its own. Each launch
 * gets a fresh profile folder, removed on close.
 */
export const chromiumPath = '/usr/bin/chromium';
export const chromiumFlags = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface Browser extends AsyncDisposable {
  context: BrowserContext;
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<Browser> {
  const profile = await mkdtemp(join(tmpdir(), 'qcrash-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: chromiumFlags,
    viewport: { width: 1280, height: 900 },
    timeout: 60_000,
  });
  const close = async () => {
    await context.close().catch(() => undefined);
    await rm(profile, { recursive: true, force: true });
  };
  return { context, close, [Symbol.asyncDispose]: close };
}

/** A page opened from file:// with everything that went wrong while loading it recorded. */
export interface LoadedPage {
  page: Page;
  consoleErrors: string[];
  pageErrors: string[];
  failedRequests: string[];
  /** Every URL the page requested: all must be file:, data: or about:. */
  requests: string[];
}

export async function openFile(context: BrowserContext, file: string, opts: { javaScript?: boolean } = {}): Promise<LoadedPage> {
  const page = await context.newPage();
  const loaded: LoadedPage = { page, consoleErrors: [], pageErrors: [], failedRequests: [], requests: [] };
  page.on('console', (m) => {
    if (m.type() === 'error') loaded.consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => loaded.pageErrors.push(e.message));
  page.on('requestfailed', (r) => loaded.failedRequests.push(`${r.url()}: ${r.failure()?.errorText ?? '?'}`));
  page.on('request', (r) => loaded.requests.push(r.url()));
  if (opts.javaScript === false) {
    const cdp = await context.newCDPSession(page);
    await cdp.send('Emulation.setScriptExecutionDisabled', { value: true });
  }
  await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
  return loaded;
}
