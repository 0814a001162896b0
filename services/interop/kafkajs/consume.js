'use strict'

// consume.js reads topics from the beginning with a kafkajs consumer of a
// group of its own, decodes every value with the registry client's decode
// (which fetches the writer schema by the id in the value's Confluent
// framing) and prints one JSON line per record:
//
//   {"topic", "partition", "offset", "key", "schemaId", "orderId",
//    "product", "price", "quantity", "customerId", "headers"}
//
// A field the writer schema lacks is absent from its line.
//
//   node consume.js [--count N] [--timeout-ms MS] TOPIC...
//
// With --count (or CONSUME_COUNT) it stops after N records; without, once it
// has read every record the topics held when it started. It exits non-zero
// if that takes longer than --timeout-ms (CONSUME_TIMEOUT_MS, default 30000),
// or if any value could not be decoded (that record's line then carries
// "error" instead of the order).
// Environment: KAFKA_BROKERS, SCHEMA_REGISTRY_URL, KAFKAJS_LOG_LEVEL.

const { env, kafka, registry, schemaId, fail } = require('./common')

function parseArgs(argv) {
  const opts = { count: Number(env('CONSUME_COUNT', '0')), timeoutMs: Number(env('CONSUME_TIMEOUT_MS', '30000')), topics: [] }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--count' || a === '--timeout-ms') {
      const v = Number(argv[++i])
      if (a === '--count') opts.count = v
      else opts.timeoutMs = v
    } else if (a.startsWith('--')) {
      throw new Error(`unknown flag ${a}`)
    } else {
      opts.topics.push(a)
    }
  }
  if (opts.topics.length === 0) {
    throw new Error('usage: node consume.js [--count N] [--timeout-ms MS] TOPIC...')
  }
  if (!Number.isInteger(opts.count) || opts.count < 0 || !(opts.timeoutMs > 0)) {
    throw new Error('--count must be a whole number and --timeout-ms positive')
  }
  return opts
}

// endOffsets is, for every partition of topics, the offset after its last
// record now, for those that hold any.
async function endOffsets(client, topics) {
  const admin = client.admin()
  await admin.connect()
  try {
    const left = new Map()
    for (const topic of topics) {
      for (const p of await admin.fetchTopicOffsets(topic)) {
        if (BigInt(p.high) > BigInt(p.low)) {
          left.set(`${topic}/${p.partition}`, BigInt(p.high))
        }
      }
    }
    return left
  } finally {
    await admin.disconnect()
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2))
  const client = kafka('orders-interop-kafkajs-consumer')
  const reg = registry()
  const left = opts.count > 0 ? null : await endOffsets(client, opts.topics)

  let seen = 0
  let failed = 0
  let finish
  const done = new Promise(resolve => { finish = resolve })
  const complete = () => (left ? left.size === 0 : seen >= opts.count)
  if (complete()) finish()

  const consumer = client.consumer({ groupId: `orders-interop-kafkajs-${process.pid}-${Date.now()}`, maxWaitTimeInMs: 500 })
  await consumer.connect()
  try {
    for (const topic of opts.topics) {
      await consumer.subscribe({ topic, fromBeginning: true })
    }
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ topic, partition, message }) => {
        if (complete()) return
        const line = { topic, partition, offset: message.offset, key: message.key && message.key.toString() }
        try {
          line.schemaId = schemaId(message.value)
          Object.assign(line, await reg.decode(message.value))
        } catch (err) {
          line.error = String(err && err.message ? err.message : err)
          failed++
        }
        line.headers = {}
        for (const [k, v] of Object.entries(message.headers || {})) {
          line.headers[k] = Buffer.isBuffer(v) ? v.toString() : String(v)
        }
        process.stdout.write(JSON.stringify(line) + '\n')
        seen++
        if (left) {
          const k = `${topic}/${partition}`
          if (left.has(k) && BigInt(message.offset) + 1n >= left.get(k)) left.delete(k)
        }
        if (complete()) finish()
      },
    })
    let timer
    const timedOut = new Promise(resolve => { timer = setTimeout(() => resolve(true), opts.timeoutMs) })
    const late = await Promise.race([done.then(() => false), timedOut])
    clearTimeout(timer)
    if (late) {
      const want = left ? `the ${left.size} partitions not yet read to their end` : `${opts.count} records`
      throw new Error(`after ${opts.timeoutMs} ms, ${seen} records of ${opts.topics.join(', ')}: still waiting for ${want}`)
    }
  } finally {
    await consumer.disconnect()
  }
  if (failed > 0) {
    throw new Error(`${failed} of ${seen} values could not be decoded`)
  }
  process.stderr.write(`read ${seen} records of ${opts.topics.join(', ')}\n`)
}

main().then(() => process.exit(0), fail)
