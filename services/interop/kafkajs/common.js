'use strict'

// What produce.js and consume.js share: the settings from the environment,
// a kafkajs client that logs to stderr (stdout carries the scripts'
// results), the registry client, and the evolved order schema.

const fs = require('fs')
const path = require('path')
const { Kafka, logLevel } = require('kafkajs')
const { SchemaRegistry } = require('@kafkajs/confluent-schema-registry')

// The subject of the orders topic's values under Confluent's
// TopicNameStrategy, as the stages use it.
const SUBJECT = 'orders-value'

function env(name, fallback) {
  const v = process.env[name]
  return v === undefined || v === '' ? fallback : v
}

function required(name) {
  const v = env(name)
  if (v === undefined) {
    throw new Error(`${name} is not set`)
  }
  return v
}

const levels = { NOTHING: logLevel.NOTHING, ERROR: logLevel.ERROR, WARN: logLevel.WARN, INFO: logLevel.INFO, DEBUG: logLevel.DEBUG }

// kafka is a kafkajs client of the brokers in KAFKA_BROKERS (comma
// separated), logging at KAFKAJS_LOG_LEVEL (default WARN) to stderr.
function kafka(clientId) {
  const brokers = required('KAFKA_BROKERS').split(',').map(s => s.trim()).filter(Boolean)
  const level = levels[env('KAFKAJS_LOG_LEVEL', 'WARN').toUpperCase()]
  if (level === undefined) {
    throw new Error(`KAFKAJS_LOG_LEVEL must be one of ${Object.keys(levels).join(', ')}`)
  }
  return new Kafka({
    clientId,
    brokers,
    logLevel: level,
    logCreator: () => ({ namespace, level, label, log }) => {
      const { message, ...extra } = log
      process.stderr.write(`${log.timestamp} ${label} [${namespace}] ${message} ${JSON.stringify(extra)}\n`)
    },
  })
}

// registry is the schema registry client of SCHEMA_REGISTRY_URL.
function registry() {
  return new SchemaRegistry({ host: required('SCHEMA_REGISTRY_URL'), clientId: 'orders-interop-kafkajs' })
}

// The fields the evolved schema adds to order.avsc, each with the default a
// reader of the older schema never needs and a writer of it implies.
const ADDED_FIELDS = [
  { name: 'quantity', type: 'int', default: 1 },
  { name: 'customerId', type: 'string', default: '' },
]

// evolvedSchema is order.avsc (ORDER_BASE_SCHEMA, default the repository's
// schemas/order.avsc), same record name and namespace, with ADDED_FIELDS
// appended.
function evolvedSchema() {
  const file = env('ORDER_BASE_SCHEMA', path.join(__dirname, '..', '..', '..', 'schemas', 'order.avsc'))
  const schema = JSON.parse(fs.readFileSync(file, 'utf8'))
  if (schema.type !== 'record' || !Array.isArray(schema.fields)) {
    throw new Error(`${file} is not an Avro record schema`)
  }
  for (const f of ADDED_FIELDS) {
    if (schema.fields.some(g => g.name === f.name)) {
      throw new Error(`${file} already has a field ${f.name}: nothing to evolve`)
    }
  }
  return { ...schema, fields: [...schema.fields, ...ADDED_FIELDS] }
}

// schemaId reads the id of the writer schema from a Confluent-framed value:
// magic byte 0, then the id as a 4-byte big-endian integer.
function schemaId(value) {
  if (!Buffer.isBuffer(value) || value.length < 5 || value[0] !== 0) {
    throw new Error('value is not in the Confluent wire format')
  }
  return value.readInt32BE(1)
}

// fail reports err on stderr and exits non-zero.
function fail(err) {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`)
  process.exit(1)
}

module.exports = { SUBJECT, ADDED_FIELDS, env, required, kafka, registry, evolvedSchema, schemaId, fail }
