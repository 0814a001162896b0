// Package rdkafka runs the pipeline end to end against a second broker
// implementation, independent of the embedded one: librdkafka's mock
// cluster of three brokers, through confluent-kafka-go. It is a Go module
// of its own, because librdkafka needs cgo: the orders binary and the main
// module stay pure Go, and `go test ./...` at the root does not build it.
//
// The package holds only its test; the orders binary it runs is built from
// the main module, as production builds it.
package rdkafka
