/**
 * Summarizes a V8 CPU profile (.cpuprofile, as BENCH_PROFILE=1 writes for a
 * benchmark's server process): the functions with the most self time, and
 * self time per package (node_modules/<package>) or source file, so a
 * benchmark can say where the server's CPU went.
 *
 *   node tools/bench/profile.ts <file.cpuprofile> [top=25]
 */
import { readFileSync } from "node:fs";
import { table } from "./stats.ts";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  totalMs: number;
  /** Self time by function, most first. */
  functions: { name: string; where: string; selfMs: number; share: number }[];
  /** Self time by package (node_modules/…), service source file, or V8/Node category, most first. */
  places: { place: string; selfMs: number; share: number }[];
}

/** summarizeProfile adds up each sample's time (the delta to the next sample) to the function it was taken in. */
export function summarizeProfile(profile: Profile): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const next = profile.timeDeltas[i + 1] ?? 0;
    self.set(profile.samples[i]!, (self.get(profile.samples[i]!) ?? 0) + next / 1000);
  }
  let totalMs = 0;
  for (const [id, ms] of self) if (byId.get(id)!.callFrame.functionName !== "(idle)") totalMs += ms;
  const functions = new Map<string, { name: string; where: string; selfMs: number }>();
  const places = new Map<string, number>();
  for (const [id, ms] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (functionName === "(idle)") continue;
    const where = url ? `${shortUrl(url)}:${lineNumber + 1}` : "";
    const key = `${functionName}@${where}`;
    const f = functions.get(key) ?? { name: functionName || "(anonymous)", where, selfMs: 0 };
    f.selfMs += ms;
    functions.set(key, f);
    const place = placeOf(url, functionName);
    places.set(place, (places.get(place) ?? 0) + ms);
  }
  const share = (ms: number) => Math.round((ms / totalMs) * 1000) / 10;
  return {
    totalMs,
    functions: [...functions.values()].sort((a, b) => b.selfMs - a.selfMs).map((f) => ({ ...f, share: share(f.selfMs) })),
    places: [...places.entries()].sort((a, b) => b[1] - a[1]).map(([place, selfMs]) => ({ place, selfMs, share: share(selfMs) })),
  };
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) return url.slice(nm + "node_modules/".length);
  const services = url.indexOf("/services/");
  return services >= 0 ? url.slice(services + 1) : url.replace(/^file:\/\//, "");
}

/** placeOf names where a function lives: its package, its service source file, or (for no URL) V8's category, e.g. (garbage collector). */
function placeOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith("(") ? functionName : "(native)";
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const parts = url.slice(nm + "node_modules/".length).split("/");
    return parts[0]!.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  if (url.startsWith("node:")) return "node: (core)";
  return shortUrl(url);
}

if (import.meta.main) {
  const [file, top = "25"] = process.argv.slice(2);
  if (!file) {
    console.error("usage: node tools/bench/profile.ts <file.cpuprofile> [top]");
    process.exit(2);
  }
  const summary = summarizeProfile(JSON.parse(readFileSync(file, "utf8")) as Profile);
  const n = Number(top);
  console.log(`${summary.totalMs.toFixed(0)} ms of CPU sampled (idle left out)\n`);
  console.log(
    table(
      ["self ms", "%", "function", "where"],
      summary.functions.slice(0, n).map((f) => [f.selfMs.toFixed(0), f.share.toFixed(1), f.name, f.where]),
    ),
  );
  console.log(
    `\n${table(
      ["self ms", "%", "package or file"],
      summary.places.slice(0, n).map((p) => [p.selfMs.toFixed(0), p.share.toFixed(1), p.place]),
    )}`,
  );
}
