// Package kafkajs runs the pipeline in the Confluent Schema Registry wire
// format with a producer and a consumer that are not the project's: Node.js
// scripts on kafkajs and @kafkajs/confluent-schema-registry (produce.js,
// consume.js), which register and read an evolved order schema through the
// registry as a JavaScript service would.
//
// The package holds only its test, which runs the scripts with node from
// this directory: run `npm ci` here first (package-lock.json pins every
// dependency). The orders binary it runs is built from the main module.
package kafkajs
