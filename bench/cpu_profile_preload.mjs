// Preload (NODE_OPTIONS=--import): a V8 CPU profile of this process, written at exit to $CPUPROF_DIR/<pid>.cpuprofile.
// Node 20 refuses --cpu-prof in NODE_OPTIONS; bench/hop.ts sets this for the gateway when asked for a profile.
import { mkdirSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector";
import process from "node:process";

const dir = process.env.CPUPROF_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post("Profiler.enable");
  session.post("Profiler.setSamplingInterval", { interval: 500 });
  session.post("Profiler.start");
  // The in-process session answers synchronously, so the profile is written before the process ends.
  process.on("exit", () => {
    session.post("Profiler.stop", (error, result) => {
      if (error) return;
      mkdirSync(dir, { recursive: true });
      writeFileSync(`${dir}/${process.pid}.cpuprofile`, JSON.stringify(result.profile));
    });
  });
}
