// BullMQ's side of bench/bullmq_compare.py: the same work as Channelkit's side, on the same Redis.
//
//   node bench.mjs worker  --url U --prefix P --queue Q --counter KEY --concurrency 100
//       one Worker; each job does one INCR of KEY on a client made once; runs until SIGTERM
//   node bench.mjs fill    --url U --prefix P --queue Q --payload FILE --jobs N
//       pre-enqueues N jobs (addBulk, 1,000 a call) for the drain, then exits
//   node bench.mjs enqueue --url U --prefix P --queue Q --payload FILE --jobs N --mode M
//       M = single (await each add), concurrent (100 adds in flight), bulk (addBulk of 100);
//       prints {"jobs": N, "seconds": S} on one line
//
// Job options match the Channelkit channel's settings: 3 attempts, the last 1,000 completed
// and 10,000 failed jobs kept.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const JOB_OPTIONS = {
  attempts: 3,
  removeOnComplete: { count: 1000 },
  removeOnFail: { count: 10000 },
};
const GROUP = 100;

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: 'string' },
    prefix: { type: 'string' },
    queue: { type: 'string' },
    counter: { type: 'string' },
    payload: { type: 'string' },
    jobs: { type: 'string', default: '0' },
    mode: { type: 'string', default: 'single' },
    concurrency: { type: 'string', default: '100' },
  },
});
const command = positionals[0];
const connection = () => new IORedis(values.url, { maxRetriesPerRequest: null });

function jobs(count) {
  const payload = JSON.parse(readFileSync(values.payload, 'utf8'));
  return Array.from({ length: count }, () => ({ name: 'receipt', data: payload, opts: JOB_OPTIONS }));
}

async function worker() {
  const counter = connection();
  const key = values.counter;
  const running = new Worker(
    values.queue,
    async () => {
      await counter.incr(key);
    },
    { connection: connection(), prefix: values.prefix, concurrency: Number(values.concurrency) },
  );
  await running.waitUntilReady();
  const stop = async () => {
    await running.close();
    counter.disconnect();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

async function fill() {
  const client = connection();
  const queue = new Queue(values.queue, { connection: client, prefix: values.prefix });
  const all = jobs(Number(values.jobs));
  for (let start = 0; start < all.length; start += 1000) {
    await queue.addBulk(all.slice(start, start + 1000));
  }
  await queue.close();
  client.disconnect(); // a connection passed in is the caller's to close
}

async function enqueue() {
  const client = connection();
  const queue = new Queue(values.queue, { connection: client, prefix: values.prefix });
  await queue.waitUntilReady();
  const all = jobs(Number(values.jobs));
  const began = process.hrtime.bigint();
  if (values.mode === 'single') {
    for (const job of all) {
      await queue.add(job.name, job.data, job.opts);
    }
  } else if (values.mode === 'concurrent') {
    for (let start = 0; start < all.length; start += GROUP) {
      await Promise.all(
        all.slice(start, start + GROUP).map((job) => queue.add(job.name, job.data, job.opts)),
      );
    }
  } else if (values.mode === 'bulk') {
    for (let start = 0; start < all.length; start += GROUP) {
      await queue.addBulk(all.slice(start, start + GROUP));
    }
  } else {
    throw new Error(`unknown mode ${values.mode}`);
  }
  const seconds = Number(process.hrtime.bigint() - began) / 1e9;
  await queue.close();
  client.disconnect();
  console.log(JSON.stringify({ jobs: all.length, seconds }));
}

const commands = { worker, fill, enqueue };
if (!(command in commands)) {
  console.error(`usage: node bench.mjs {${Object.keys(commands).join('|')}} --url ... --prefix ...`);
  process.exit(2);
}
await commands[command]();
