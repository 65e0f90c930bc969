// A scanner of a live process's memory (/proc/PID/maps + /proc/PID/mem) for
// byte strings, and the forms in which private key parts sit in memory.
// Reading another process's memory needs ptrace access: the server is
// non-dumpable, so only root (CAP_SYS_PTRACE) can; the tests run as root.
// It reads only; it never writes to /proc/PID/mem.

import fs from 'node:fs';
import path from 'node:path';

const CHUNK = 4 << 20;
const PAGE = 4096;
// Kernel pages and sanitizer metadata, never a copy of program data: the
// vDSO's data pages and the legacy vsyscall page (unreadable through
// /proc/PID/mem), and ASan's shadow memory (terabytes of reserved address
// space describing which bytes are addressable; it holds no bytes of the
// program's own). The shadow is recognised by its fixed x86-64 range.
const SKIP_PATHS = new Set(['[vvar]', '[vvar_vclock]', '[vsyscall]']);
const ASAN_SHADOW = [0x00007fff8000n, 0x10007fff8000n];
const ARENA_ALIGN = 64n << 20n;   // glibc HEAP_MAX_SIZE on 64-bit

// /proc/PID/maps -> [{start, end (BigInt), perms, path}]
export function readMaps(pid) {
  const out = [];
  for (const line of fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (m) out.push({ start: BigInt('0x' + m[1]), end: BigInt('0x' + m[2]), perms: m[3], path: m[4] });
  }
  return out;
}

// The stack pointer of every thread that is in the kernel (blocked in a
// system call, as every idle server thread is): /proc/PID/task/TID/syscall
// is "NR ARG1..ARG6 SP PC", or "-1 SP PC" outside a system call.
function threadStackPointers(pid) {
  const sps = [];
  let tids = [];
  try { tids = fs.readdirSync(`/proc/${pid}/task`); } catch { return sps; }
  for (const tid of tids) {
    let f;
    try { f = fs.readFileSync(`/proc/${pid}/task/${tid}/syscall`, 'utf8').trim().split(/\s+/); } catch { continue; }
    if (f.length >= 3 && f[0] !== 'running') sps.push({ tid, sp: BigInt(f[f.length - 2]) });
  }
  return sps;
}

// A short name for where a mapping is: heap, stack, a thread's stack, an
// anonymous mapping (a glibc malloc arena, an idle thread stack), a file.
function describe(maps, i, sps, asan) {
  const m = maps[i];
  if (m.path === '[heap]') return 'heap';
  if (m.path === '[stack]') return 'stack (main thread)';
  if (m.path.startsWith('[')) return m.path;
  if (m.path !== '') return `file ${path.basename(m.path)}`;
  const t = sps.find((s) => s.sp >= m.start && s.sp < m.end);
  if (t) return `anon: stack of thread ${t.tid}`;
  if (asan) return 'anon (ASan heap or mmap)';
  if (m.start % ARENA_ALIGN === 0n && m.perms.startsWith('rw')) return 'anon: malloc arena';
  const prev = maps[i - 1];
  if (prev && prev.end === m.start && prev.perms.startsWith('---') && prev.path === '') {
    return 'anon: idle thread stack (after a guard page)';
  }
  return 'anon';
}

function inAsanShadow(m) {
  return m.start >= ASAN_SHADOW[0] && m.end <= ASAN_SHADOW[1];
}

// true when pid runs an AddressSanitizer build (it has shadow mappings)
export function isAsan(pid) {
  return readMaps(pid).some(inAsanShadow);
}

// Reads [pos, pos + len) into buf; a range the kernel cannot read (EIO,
// EFAULT: a page of a file beyond its end, a PROT_NONE hole) is left as
// zeros, page by page. read(buf, off, len, pos) is fs.readSync, or an
// awaited FileHandle.read when the scan runs alongside requests.
function* readRange(buf, len, pos, stats) {
  try {
    const n = yield [buf, 0, len, pos];
    if (n === len) return;
  } catch (e) {
    if (e.code !== 'EIO' && e.code !== 'EFAULT' && e.code !== 'ENOMEM') throw e;
  }
  for (let off = 0; off < len; off += PAGE) {
    const l = Math.min(PAGE, len - off);
    let n = 0;
    try { n = yield [buf, off, l, pos + off]; } catch { n = 0; }
    if (n < l) { buf.fill(0, off + n, off + l); stats.unreadable += l - n; }
  }
}

// The scan, as a generator that yields each read it needs done.
function* scan(pid, needles, maxHitsPerNeedle) {
  const t0 = Date.now();
  const maps = readMaps(pid);
  const sps = threadStackPointers(pid);
  const asan = maps.some(inAsanShadow);
  const overlap = Math.max(...needles.map((n) => n.buf.length)) - 1;
  const buf = Buffer.alloc(CHUNK + overlap);
  const stats = { unreadable: 0 };
  const hits = [];
  const counts = new Map();
  let bytes = 0;
  let mappings = 0;
  for (let i = 0; i < maps.length; i++) {
    const m = maps[i];
    if (m.perms[0] !== 'r' || SKIP_PATHS.has(m.path) || inAsanShadow(m)) continue;
    const region = describe(maps, i, sps, asan);
    mappings += 1;
    // chunks overlap by the longest needle less one byte, so a needle
    // across a chunk boundary is found once, in the chunk it ends in
    let carried = 0;
    for (let pos = m.start; pos < m.end;) {
      const len = Number(m.end - pos < BigInt(CHUNK) ? m.end - pos : BigInt(CHUNK));
      yield* readRange(buf.subarray(carried), len, Number(pos), stats);
      const view = buf.subarray(0, carried + len);
      const base = pos - BigInt(carried);
      for (const n of needles) {
        for (let at = view.indexOf(n.buf); at !== -1; at = view.indexOf(n.buf, at + 1)) {
          if (at + n.buf.length <= carried) continue;   // seen in the previous chunk
          const c = (counts.get(n.label) || 0) + 1;
          counts.set(n.label, c);
          if (c <= maxHitsPerNeedle) {
            hits.push({ label: n.label, kind: n.kind, addr: '0x' + (base + BigInt(at)).toString(16), region });
          }
        }
      }
      bytes += len;
      pos += BigInt(len);
      carried = Math.min(overlap, view.length);
      view.copy(buf, 0, view.length - carried);
    }
  }
  return { hits, counts, bytes, mappings, unreadable: stats.unreadable, ms: Date.now() - t0 };
}

// Searches every readable mapping of pid for every needle, in one pass.
//   needles: [{label, buf, kind}], buf at least 8 bytes long; kind is
//   the caller's, copied into the hits
// -> {hits: [{label, kind, addr, region}] (at most maxHitsPerNeedle a needle),
//     counts: Map label -> hits, bytes, mappings, unreadable, ms}
export function scanProcess(pid, needles, { maxHitsPerNeedle = 8 } = {}) {
  const fd = fs.openSync(`/proc/${pid}/mem`, 'r');
  try {
    const g = scan(pid, needles, maxHitsPerNeedle);
    let r = g.next();
    while (!r.done) {
      const [b, off, len, pos] = r.value;
      let n;
      let err = null;
      try { n = fs.readSync(fd, b, off, len, pos); } catch (e) { err = e; }
      r = err ? g.throw(err) : g.next(n);
    }
    return r.value;
  } finally {
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------- needles

// Big-endian bytes without leading zeros (as in a JWK, a DER INTEGER's
// magnitude, a PKCS#11 attribute).
export function stripZeros(be) {
  let i = 0;
  while (i < be.length - 1 && be[i] === 0) i++;
  return be.subarray(i);
}

// Windows of width bytes that tile a (the last one flush with its end), so
// that any copy of 2 * width - 1 contiguous bytes of a contains one of them.
export function windows(a, width) {
  if (a.length <= width) return [{ off: 0, buf: a }];
  const out = [];
  for (let off = 0; off + width <= a.length; off += width) out.push({ off, buf: a.subarray(off, off + width) });
  if (a.length % width) out.push({ off: a.length - width, buf: a.subarray(a.length - width) });
  return out;
}

// An OpenSSL BIGNUM's words on x86-64 (and Botan's, SoftHSM's other
// backend): the number byte-reversed, zero-padded to a multiple of 8.
export function limbsLE64(be) {
  const v = stripZeros(be);
  const out = Buffer.alloc(Math.ceil(v.length / 8) * 8);
  for (let i = 0; i < v.length; i++) out[i] = v[v.length - 1 - i];
  return out;
}

// The needles of one secret number: windows of its big-endian bytes and of
// its little-endian 64-bit-limb form (the padding left out: a window of
// zeros would match anything). label: "<label> <form>@<offset>".
export function numberNeedles(label, be, width) {
  const v = stripZeros(be);
  const le = limbsLE64(v).subarray(0, v.length);
  return [
    ...windows(v, width).map((w) => ({ label: `${label} BE@${w.off}`, buf: Buffer.from(w.buf) })),
    ...windows(le, width).map((w) => ({ label: `${label} LE64@${w.off}`, buf: Buffer.from(w.buf) })),
  ];
}

// ---------------------------------------------------------------- processes

// pid and all its descendants (from every process's parent in /proc).
export function processTree(pid) {
  const kids = new Map();
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let stat;
    try { stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8'); } catch { continue; }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (!kids.has(ppid)) kids.set(ppid, []);
    kids.get(ppid).push(Number(e));
  }
  const out = [];
  const todo = [pid];
  while (todo.length) {
    const p = todo.shift();
    out.push(p);
    todo.push(...(kids.get(p) || []));
  }
  return out;
}

export function argv(pid) {
  try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').filter((s, i, a) => i < a.length - 1 || s); } catch { return []; }
}

// The process among pids that holds a TCP socket listening on port.
export function listenerOf(pids, port) {
  const inodes = new Set();
  for (const f of ['tcp', 'tcp6']) {
    let text = '';
    try { text = fs.readFileSync(`/proc/${pids[0]}/net/${f}`, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c.length < 10 || c[3] !== '0A') continue;   // TCP_LISTEN
      if (parseInt(c[1].split(':')[1], 16) === port) inodes.add(c[9]);
    }
  }
  for (const p of pids) {
    let fds = [];
    try { fds = fs.readdirSync(`/proc/${p}/fd`); } catch { continue; }
    for (const fd of fds) {
      let l;
      try { l = fs.readlinkSync(`/proc/${p}/fd/${fd}`); } catch { continue; }
      const m = /^socket:\[(\d+)\]$/.exec(l);
      if (m && inodes.has(m[1])) return p;
    }
  }
  return null;
}
