'use strict'

// produce.js registers the evolved order schema (order.avsc plus quantity
// and customerId, both with defaults) under the subject orders-value with
// @kafkajs/confluent-schema-registry, and produces every order of a JSON
// file to the orders topic with kafkajs: key the orderId, value the
// registry client's Confluent framing (magic byte 0, the 4-byte schema id,
// the Avro body).
//
//   node produce.js ORDERS.json     (or ORDERS_FILE=ORDERS.json)
//
// The file is a JSON array of {orderId, product, price, quantity,
// customerId}; a missing quantity or customerId takes the schema's default.
// Environment: KAFKA_BROKERS (comma separated), SCHEMA_REGISTRY_URL,
// ORDERS_TOPIC (default orders), ORDER_BASE_SCHEMA (default the repository's
// schemas/order.avsc), KAFKAJS_LOG_LEVEL (default WARN).
//
// On success it prints one JSON line, {"subject", "schemaId", "topic",
// "produced"}; on any error it says why on stderr and exits non-zero.

const fs = require('fs')
const { Partitioners } = require('kafkajs')
const { SchemaType } = require('@kafkajs/confluent-schema-registry')
const { SUBJECT, ADDED_FIELDS, env, kafka, registry, evolvedSchema, fail } = require('./common')

const BATCH = 500

function readOrders(file) {
  const orders = JSON.parse(fs.readFileSync(file, 'utf8'))
  if (!Array.isArray(orders)) {
    throw new Error(`${file}: want a JSON array of orders`)
  }
  return orders.map((o, i) => {
    if (o === null || typeof o !== 'object' || typeof o.orderId !== 'string' || o.orderId === '') {
      throw new Error(`${file}: order ${i} has no orderId`)
    }
    const out = { ...o }
    for (const f of ADDED_FIELDS) {
      if (out[f.name] === undefined) {
        out[f.name] = f.default
      }
    }
    return out
  })
}

async function main() {
  const file = process.argv[2] || env('ORDERS_FILE')
  if (!file) {
    throw new Error('usage: node produce.js ORDERS.json (or ORDERS_FILE)')
  }
  const topic = env('ORDERS_TOPIC', 'orders')
  const orders = readOrders(file)

  const reg = registry()
  const { id } = await reg.register({ type: SchemaType.AVRO, schema: JSON.stringify(evolvedSchema()) }, { subject: SUBJECT })

  const messages = []
  for (const o of orders) {
    // encode validates o against the registered schema: a field of the
    // wrong type is an error, not a record.
    messages.push({ key: o.orderId, value: await reg.encode(id, o) })
  }

  const producer = kafka('orders-interop-kafkajs-producer').producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
  })
  await producer.connect()
  try {
    for (let i = 0; i < messages.length; i += BATCH) {
      await producer.send({ topic, acks: -1, messages: messages.slice(i, i + BATCH) })
    }
  } finally {
    await producer.disconnect()
  }
  process.stdout.write(JSON.stringify({ subject: SUBJECT, schemaId: id, topic, produced: messages.length }) + '\n')
}

main().then(() => process.exit(0), fail)
