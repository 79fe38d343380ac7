package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestNewTracerProvider(t *testing.T) {
	ctx := context.Background()
	var buf bytes.Buffer
	tp, shutdown, err := NewTracerProvider(ctx, TracingConfig{Exporter: "stdout", SampleRatio: 1, ServiceName: "thingpipe-test"}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("test").Start(ctx, "alerting process")
	span.End()
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, `"Name":"alerting process"`) || !strings.Contains(out, "thingpipe-test") {
		t.Errorf("stdout exporter wrote %q, want the span and the service name", out)
	}

	tp, shutdown, err = NewTracerProvider(ctx, TracingConfig{Exporter: "none"}, &buf)
	if err != nil || shutdown(ctx) != nil {
		t.Fatalf("none: %v", err)
	}
	if _, span := tp.Tracer("test").Start(ctx, "x"); span.IsRecording() {
		t.Error("exporter none records spans")
	}

	if _, _, err := NewTracerProvider(ctx, TracingConfig{Exporter: "zipkin"}, &buf); err == nil || !strings.Contains(err.Error(), `unknown exporter "zipkin"`) {
		t.Errorf("unknown exporter: %v", err)
	}
	// OTLP connects lazily: building it needs no collector.
	if _, shutdown, err := NewTracerProvider(ctx, TracingConfig{Exporter: "otlp", Endpoint: "http://127.0.0.1:4318", SampleRatio: 1, ServiceName: "t"}, &buf); err != nil {
		t.Errorf("otlp: %v", err)
	} else {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_ = shutdown(cctx)
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, LogConfig{Level: "warn", Format: "json"})
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "stage", "binding")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	if rec["msg"] != "shown" || rec["stage"] != "binding" || rec["level"] != "WARN" {
		t.Errorf("log record = %v", rec)
	}
	buf.Reset()
	log, _ = NewLogger(&buf, LogConfig{Level: "debug", Format: "text"})
	log.Debug("hello")
	if !strings.Contains(buf.String(), "level=DEBUG msg=hello") {
		t.Errorf("text log = %q", buf.String())
	}
	if _, err := NewLogger(&buf, LogConfig{Level: "loud"}); err == nil {
		t.Error("bad level accepted")
	}
}
