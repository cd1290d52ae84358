// /proc readings of the servers a benchmark started, shared by bench/edge.mjs
// and bench/floor.mjs (Linux only, as the benchmarks are).
import fs from "node:fs";
import { execFileSync } from "node:child_process";

// workerd processes below this one (Miniflare spawns the runtime).
export function workerdPids() {
  const out = execFileSync("ps", ["-eo", "pid,ppid,comm"], { encoding: "utf8" });
  const childrenOf = new Map();
  for (const line of out.trim().split("\n").slice(1)) {
    const [pid, ppid, comm] = line.trim().split(/\s+/);
    if (!childrenOf.has(ppid)) childrenOf.set(ppid, []);
    childrenOf.get(ppid).push({ pid, comm });
  }
  const found = [];
  const walk = (pid) => {
    for (const child of childrenOf.get(String(pid)) || []) {
      if (child.comm.startsWith("workerd")) found.push(child.pid);
      walk(child.pid);
    }
  };
  walk(process.pid);
  return found;
}

export function readProc(pid, file) {
  try {
    return fs.readFileSync(`/proc/${pid}/${file}`, "utf8");
  } catch (err) {
    if (err.code === "ENOENT") throw new Error(`server process ${pid} is gone (see its output above)`);
    throw err;
  }
}

export function rssKb(pids) {
  let total = 0;
  for (const pid of pids) {
    const m = readProc(pid, "status").match(/VmRSS:\s+(\d+) kB/);
    if (m) total += Number(m[1]);
  }
  return total;
}

export function fdCount(pids) {
  let total = 0;
  for (const pid of pids) total += fs.readdirSync(`/proc/${pid}/fd`).length;
  return total;
}

// The soft limit on open files this process (and so every server it starts)
// runs under; scripts/bench-edge.sh raises it to the hard limit.
export function fdLimit() {
  const line = readProc(process.pid, "limits").match(/^Max open files\s+(\S+)/m);
  return line && line[1] !== "unlimited" ? Number(line[1]) : Infinity;
}

// utime + stime in clock ticks, all threads of each process.
export function cpuTicks(pids) {
  let total = 0;
  for (const pid of pids) {
    const stat = readProc(pid, "stat");
    // Fields after `(comm)`, which may hold spaces; utime and stime are the
    // 14th and 15th fields of the line, the 12th and 13th after comm.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    total += Number(fields[11]) + Number(fields[12]);
  }
  return total;
}

// The q-quantile of an ascending array.
export function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}
