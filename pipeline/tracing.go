package pipeline

import (
	"context"
	"fmt"
	"io"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Trace context travels in message metadata under the W3C keys "traceparent" and "tracestate", so a
// trace started by a producer continues through SQS/Kinesis into a stage and out again to SNS and the
// dead-letter queues.
var traceContext = propagation.TraceContext{}

// MetadataCarrier adapts watermill metadata to OpenTelemetry's TextMapCarrier.
type MetadataCarrier message.Metadata

func (c MetadataCarrier) Get(key string) string { return c[key] }
func (c MetadataCarrier) Set(key, value string) { c[key] = value }
func (c MetadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// InjectTrace writes the span context in ctx (if any) into md as traceparent/tracestate. Publishers
// of outcome events call it (or use TracePublisher) so the next hop continues the trace.
func InjectTrace(ctx context.Context, md message.Metadata) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	traceContext.Inject(ctx, MetadataCarrier(md))
}

// ExtractTrace returns ctx with the remote span context found in md, if any.
func ExtractTrace(ctx context.Context, md message.Metadata) context.Context {
	return traceContext.Extract(ctx, MetadataCarrier(md))
}

// TracePublisher wraps pub so every published message carries the trace context of its own
// context (msg.Context()), e.g. outcome events published from inside a handler.
func TracePublisher(pub message.Publisher) message.Publisher { return tracePublisher{pub} }

type tracePublisher struct{ message.Publisher }

func (p tracePublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		InjectTrace(m.Context(), m.Metadata)
	}
	return p.Publisher.Publish(topic, msgs...)
}

// NewTracerProvider builds the tracer provider for cfg. With the exporter "none" (the default) it is
// a no-op provider: spans are not recorded, but an incoming traceparent is still passed on. shutdown
// flushes buffered spans; call it on exit.
func NewTracerProvider(ctx context.Context, cfg TracingConfig, stdout io.Writer) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	var exp sdktrace.SpanExporter
	switch cfg.Exporter {
	case "", "none":
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	case "stdout":
		exp, err = stdouttrace.New(stdouttrace.WithWriter(stdout))
	case "otlp":
		// Endpoint, headers and TLS come from the standard OTEL_EXPORTER_OTLP_* environment
		// variables; cfg.Endpoint, when set, overrides the endpoint.
		var opts []otlptracehttp.Option
		if cfg.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(cfg.Endpoint))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	default:
		return nil, nil, fmt.Errorf("tracing: unknown exporter %q", cfg.Exporter)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: creating %s exporter: %w", cfg.Exporter, err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(cfg.ServiceName)))
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: resource: %w", err)
	}
	p := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	)
	return p, p.Shutdown, nil
}
