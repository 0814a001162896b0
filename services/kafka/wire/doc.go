// Package wire encodes and decodes the bytes of the Kafka requests and
// responses the project writes by hand for speed: fetch requests, fetch
// responses and the record batches they carry, and the record batches of
// produce requests. It holds no connection and no client; services/kafka
// sends and receives what it makes.
//
// Decoding cuts keys, values and header values out of the response they
// came in, without a copy, so a record keeps its response alive. Every
// length and count read from the wire is checked against the bytes left
// before it is used, so a hostile or corrupt response is refused at once.
// Compressed batches and message sets older than record batches (Kafka
// before 0.11) are rare on this path and are decoded by kafka-go's
// protocol package instead. The fuzz tests check the encoders and decoders
// against kafka-go's codec and franz-go's kmsg, two independent
// implementations.
package wire
