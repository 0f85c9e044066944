import { connect, type Socket } from 'node:net';
import { freePort, runRegistry, spawnRegistry, useTestDatabase } from '@mesh/testkit';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * `--max-connections` (issue 16): beyond that many open connections on the
 * main port a new one is closed on arrival, before any request on it is
 * parsed; the connections already open keep working, the admin port is not
 * bounded by it, and each drop is counted.
 */
const db = useTestDatabase();
const sockets: Socket[] = [];
afterAll(() => {
  for (const s of sockets) s.destroy();
});

/** One keep-alive connection; resolves once connected. */
const open = (port: number) =>
  new Promise<Socket>((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
    sockets.push(s);
  });

/** Sends one GET /health on `s` and resolves with the raw answer, or `closed` if the server ends it first. */
const health = (s: Socket) =>
  new Promise<string>((resolve) => {
    let data = '';
    const onData = (d: Buffer) => {
      data += d.toString();
      if (data.includes('\r\n\r\n') && data.includes('"healthy"')) done(data);
    };
    const onEnd = () => done(data || 'closed');
    const done = (v: string) => {
      s.off('data', onData);
      s.off('end', onEnd);
      s.off('close', onEnd);
      resolve(v);
    };
    s.on('data', onData);
    s.on('end', onEnd);
    s.on('close', onEnd);
    setTimeout(() => done(data || 'timeout'), 5_000).unref();
    s.write('GET /health HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n', () => {});
  });

describe('--max-connections', () => {
  it('closes connections past the bound on arrival; open ones, the admin port and the count carry on', async () => {
    const port = await freePort();
    const r = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'maxconn',
      port,
      adminPort: await freePort(),
      args: ['--max-connections', '3'],
    });
    try {
      // Connections are taken until one is closed on arrival. The bound counts
      // every open connection, so the harness's own keep-alive from its
      // readiness probe may hold one of the three.
      const held: Socket[] = [];
      let drops = 0;
      for (let i = 0; i < 6 && drops === 0; i++) {
        const s = await open(port);
        const answer = await health(s);
        if (answer === 'closed') drops += 1;
        else {
          expect(answer).toMatch(/^HTTP\/1\.1 200/);
          held.push(s);
        }
      }
      expect(drops).toBe(1);
      expect(held.length).toBeGreaterThanOrEqual(2);
      expect(held.length).toBeLessThanOrEqual(3);
      // The admin port is not bounded by it, and the open ones still answer.
      expect((await fetch(`${r.adminUrl}/admin/drain`)).status).toBe(200);
      for (const s of held) expect(await health(s)).toMatch(/^HTTP\/1\.1 200/);
      // Once they close, new connections are taken again.
      for (const s of held) s.destroy();
      let taken = false;
      for (let i = 0; i < 50 && !taken; i++) {
        const answer = await health(await open(port));
        if (answer === 'closed') drops += 1;
        else taken = true;
      }
      expect(taken).toBe(true);
      const metrics = await (await fetch(`${r.url}/metrics`)).text();
      expect(metrics).toMatch(new RegExp(`^mesh_connections_dropped_total ${drops}$`, 'm'));
    } finally {
      for (const s of sockets) s.destroy();
      await r.stop();
    }
  });

  it('is bounded by default below the file limit: a flood past it leaves the admin port and the main port answering (issue 30 finding 5)', async () => {
    // A registry whose process may hold 400 open files (prlimit), default
    // settings: its bound is 400 - 256 = 144 main-port connections. Without a
    // default bound, 500 connections used every descriptor and both ports
    // stopped accepting (EMFILE) until they closed.
    const [port, adminPort] = [await freePort(), await freePort()];
    const r = await spawnRegistry({
      databaseUrl: db.url,
      replicaId: 'maxconn-default',
      port,
      adminPort,
      launcher: ['prlimit', '--nofile=400:400'],
    });
    try {
      const flood: Socket[] = [];
      for (let i = 0; i < 500; i++) {
        const s = await open(port).catch(() => undefined); // a connection reset on arrival may fail here
        if (s) flood.push(s);
      }
      // Past the bound, connections are closed on arrival; the admin port still answers.
      const drain = await fetch(`http://127.0.0.1:${adminPort}/admin/drain`, {
        signal: AbortSignal.timeout(10_000),
      });
      expect(drain.status).toBe(200);
      expect(await drain.json()).toMatchObject({ draining: false });
      // The main port: once the flood goes, new connections are answered.
      for (const s of flood) s.destroy();
      let answered = false;
      for (let i = 0; i < 100 && !answered; i++) {
        answered = (await health(await open(port))).startsWith('HTTP/1.1 200');
        if (!answered) await new Promise((r) => setTimeout(r, 100));
      }
      expect(answered).toBe(true);
      const dropped = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const n = Number(/^mesh_connections_dropped_total (\d+)$/m.exec(dropped)?.[1]);
      // The bound engaged: most of the flood past 144 was dropped (Node's count
      // races with connections closing, so not exactly 500 - 144; a full-suite
      // run saw 352).
      expect(n).toBeGreaterThanOrEqual(Math.floor((500 - 144) * 0.9));
      expect(n).toBeLessThanOrEqual(500);
      expect(r.logs()).not.toContain('EMFILE');
    } finally {
      await r.stop();
    }
  }, 180_000);

  it('refuses a bound that is not a number of connections', async () => {
    const r = await runRegistry({
      databaseUrl: db.url,
      replicaId: 'maxconn-bad',
      args: ['--max-connections', '-1'],
      timeoutMs: 20_000,
    });
    expect(r.code).not.toBe(0);
    expect(r.output).toContain('max-connections');
  });
});
