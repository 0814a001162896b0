package testkit

import (
	"io"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/orderflow/orders/services/logs"
)

// SampledLogger is the stages' logger at benchmark rates, writing nowhere:
// JSON at info, and of each message the first 100 lines in a second, then
// one in 100 (LOG_SAMPLE's default).
func SampledLogger() *zap.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	core := zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zapcore.InfoLevel)
	return zap.New(logs.NewSampler(core, 100))
}
