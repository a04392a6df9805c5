/**
 * One nginx reverse-proxy hop for the benchmarks, configured the way a fair comparison needs: buffering off
 * (streams pass as they come), HTTP/1.1 keep-alive to the upstream, access log off. Runs in the foreground
 * as a child process with its own prefix directory; stopped with the benchmark.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const NGINX_BIN = ["/usr/sbin/nginx", "/usr/bin/nginx"].find((p) => existsSync(p)) ?? null;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface Nginx {
  origin: string;
  /** The nginx master process (its worker is a child). */
  pid: number;
  stop(): Promise<void>;
}

/** Starts nginx proxying to `upstream` (an http://127.0.0.1:PORT origin); null when nginx is not installed. */
export async function startNginx(upstream: string): Promise<Nginx | null> {
  if (!NGINX_BIN) return null;
  const dir = await mkdtemp(join(tmpdir(), "ws-nginx-"));
  const port = await freePort();
  const upstreamHost = new URL(upstream).host;
  await writeFile(
    join(dir, "nginx.conf"),
    `
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream provider { server ${upstreamHost}; keepalive 256; }
  server {
    listen 127.0.0.1:${port};
    client_max_body_size 100m;
    location / {
      proxy_pass http://provider;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 300s;
    }
  }
}
`,
  );
  const child: ChildProcess = spawn(NGINX_BIN, ["-p", dir, "-c", join(dir, "nginx.conf")], { stdio: ["ignore", "ignore", "pipe"] });
  const origin = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => (s.end(), resolve(true)));
      s.on("error", () => resolve(false));
    });
    if (up) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    origin,
    pid: child.pid!,
    async stop() {
      child.kill("SIGQUIT");
      await new Promise((r) => child.once("exit", r));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
