package logs_test

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/orderflow/orders/services/logs"
)

func TestLoggerAtStampsEveryLineWithTheBatchTime(t *testing.T) {
	core, observed := observer.New(zap.InfoLevel)
	at := time.Date(2026, 11, 29, 18, 14, 46, 884268796, time.UTC)
	log := logs.LoggerAt(zap.New(core), at)
	log.Info("first")
	if ce := log.Check(zap.InfoLevel, "second"); ce != nil {
		ce.Write()
	}
	entries := observed.All()
	if len(entries) != 2 {
		t.Fatalf("%d lines, want 2", len(entries))
	}
	for _, e := range entries {
		if !e.Time.Equal(at) {
			t.Fatalf("line %q at %v, want %v", e.Message, e.Time, at)
		}
	}
}
