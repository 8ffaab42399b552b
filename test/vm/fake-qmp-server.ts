import { createServer, type Server, type Socket } from 'node:net';

/**
 * A scripted QMP server on a unix socket, for the protocol edge cases real
 * QEMU never produces on demand (replies out of order, a dropped socket with
 * calls pending, a garbage line). Everything else is tested against QEMU.
 */
export interface FakeConnection {
  socket: Socket;
  send(msg: unknown): void;
  sendRaw(text: string): void;
  drop(): void;
}

export interface FakeQmpOptions {
  /** Sent on connect; null sends nothing. */
  greeting?: unknown | null;
  /** Called for every command after qmp_capabilities (which is answered automatically). */
  onCommand?: (msg: { execute: string; arguments?: Record<string, unknown>; id?: unknown }, conn: FakeConnection) => void;
}

export const fakeGreeting = {
  QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: 'fake' }, capabilities: ['oob'] },
};

export class FakeQmpServer {
  readonly received: unknown[] = [];
  connection?: FakeConnection;
  private constructor(
    private readonly server: Server,
    readonly path: string,
  ) {}

  static async listen(path: string, opts: FakeQmpOptions = {}): Promise<FakeQmpServer> {
    const server = createServer();
    const fake = new FakeQmpServer(server, path);
    server.on('connection', (socket) => {
      const conn: FakeConnection = {
        socket,
        send: (m) => socket.write(JSON.stringify(m) + '\n'),
        sendRaw: (t) => socket.write(t),
        drop: () => socket.destroy(),
      };
      fake.connection = conn;
      const greeting = opts.greeting === undefined ? fakeGreeting : opts.greeting;
      if (greeting !== null) conn.send(greeting);
      let buf = '';
      socket.setEncoding('utf8');
      socket.on('error', () => {});
      socket.on('data', (chunk: string) => {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const msg = JSON.parse(buf.slice(0, nl)) as { execute: string; id?: unknown; arguments?: Record<string, unknown> };
          buf = buf.slice(nl + 1);
          fake.received.push(msg);
          if (msg.execute === 'qmp_capabilities') conn.send({ return: {}, id: msg.id });
          else opts.onCommand?.(msg, conn);
        }
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, resolve);
    });
    return fake;
  }

  async close(): Promise<void> {
    this.connection?.drop();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
