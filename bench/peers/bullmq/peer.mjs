// BullMQ as a peer in wasmjob's benchmark: one queue, one worker of the given concurrency with a
// no-op processor, jobs added with `addBulk`. Speaks the protocol of ../README.md:
//   node peer.mjs --redis URL --tasks N --concurrency C   (prints `ready`, waits for `go`, prints JSON)
import { Queue, Worker } from "bullmq";
import IORedis from "ioredis";
import { createInterface } from "node:readline";
import { readFileSync } from "node:fs";

const BULK = 1000;

function flags(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    const [name, value] = [argv[i], argv[i + 1]];
    if (!["--redis", "--tasks", "--concurrency"].includes(name) || value === undefined) {
      throw new Error(`usage: peer.mjs --redis URL --tasks N --concurrency C (got ${name})`);
    }
    out[name.slice(2)] = value;
  }
  return { url: new URL(out.redis), tasks: Number(out.tasks), concurrency: Number(out.concurrency) };
}

async function main() {
  const { url, tasks, concurrency } = flags(process.argv.slice(2));
  // Workers block on Redis, so BullMQ wants `maxRetriesPerRequest: null`; as an ES module it takes
  // a client, not connection options.
  const connection = new IORedis(url.href, { maxRetriesPerRequest: null });
  const version = JSON.parse(
    readFileSync(new URL("./node_modules/bullmq/package.json", import.meta.url)),
  ).version;

  let completed = 0;
  let finish;
  const allDone = new Promise((resolve) => (finish = resolve));
  const worker = new Worker("bench", async () => {}, { connection, concurrency });
  // `completed` fires after BullMQ has moved the job to its completed set in Redis: the report.
  worker.on("completed", () => {
    completed += 1;
    if (completed === tasks) finish(performance.now());
  });
  worker.on("failed", (job, err) => console.error(`job ${job?.id} failed: ${err}`));
  const queue = new Queue("bench", { connection });
  await Promise.all([worker.waitUntilReady(), queue.waitUntilReady()]);

  const lines = createInterface({ input: process.stdin });
  console.log("ready");
  for await (const line of lines) {
    if (line.trim() === "go") break;
  }
  lines.close();

  const started = performance.now();
  // addBulk is BullMQ's way to add many jobs: one round trip per call. Calls of a thousand jobs
  // keep each command's size reasonable.
  for (let first = 0; first < tasks; first += BULK) {
    const jobs = [];
    for (let i = first; i < Math.min(first + BULK, tasks); i++) {
      jobs.push({ name: "noop", data: { i } });
    }
    await queue.addBulk(jobs);
  }
  const ended = await allDone;
  await worker.close();
  await queue.close();
  await connection.quit();
  console.log(
    JSON.stringify({
      version,
      seconds: (ended - started) / 1000,
      completed,
      notes: `one Worker of concurrency ${concurrency}, jobs added with addBulk in calls of ${BULK}, completed jobs kept (the default)`,
    }),
  );
}

main().catch((err) => {
  console.error(`bullmq peer: ${err?.stack ?? err}`);
  process.exit(1);
});
