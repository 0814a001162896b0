package testkit

import (
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// SampledLogger is the stages' logger at benchmark rates, writing nowhere:
// JSON at info, and of each message the first 100 lines in a second, then
// one in 100 (LOG_SAMPLE's default).
func SampledLogger() *zap.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	core := zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zapcore.InfoLevel)
	return zap.New(zapcore.NewSamplerWithOptions(core, time.Second, 100, 100))
}
