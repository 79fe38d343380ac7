package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/thingpipe/thingpipe/deploy"
	"github.com/thingpipe/thingpipe/internal/moto"
	"github.com/thingpipe/thingpipe/pipeline"
)

// startMoto runs a moto server of this test's own and points the SDK's default chain at it through
// the environment; t.Setenv restores the environment for the package's other tests, which use the
// package's moto (TestMain).
func startMoto(t *testing.T) *moto.Server {
	t.Helper()
	srv, err := moto.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": srv.Endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
		"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull, "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_SESSION_TOKEN": "", "AWS_PROFILE": "",
	} {
		t.Setenv(k, v)
	}
	return srv
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// thingpipe run against moto with the deploy/ stack: all four stages run, a device is provisioned,
// telemetry is archived, a poison message lands in its dead-letter queue with the reason, the
// endpoints answer, and SIGTERM (context cancel) stops everything cleanly.
func TestRunEndToEndOnMoto(t *testing.T) {
	start := time.Now()
	phase := func(name string) { t.Logf("%6.2fs %s", time.Since(start).Seconds(), name) }
	startMoto(t)
	ctx := context.Background()
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, err := deploy.Deploy(ctx, awsCfg, deploy.Options{PollInterval: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("deploying the stack to moto: %v", err)
	}

	phase("stack deployed")
	// The defaults, with waits short enough for a test.
	cfg, err := pipeline.Load("", []string{
		"THINGPIPE_HTTP_ADDR=127.0.0.1:0",
		"THINGPIPE_LOG__LEVEL=debug",
		"THINGPIPE_SHUTDOWN_TIMEOUT=15s",
		"THINGPIPE_SQS__WAIT_TIME=1s",
		"THINGPIPE_KINESIS__POLL_INTERVAL=100ms",
		"THINGPIPE_KINESIS__CHECKPOINT_INTERVAL=200ms",
		"THINGPIPE_ARCHIVAL__MAX_AGE=300ms",
		"THINGPIPE_READINESS__CHECK_INTERVAL=100ms",
	})
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("thingpipe run logs:\n%s", logs.String())
		}
	})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	addrCh := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(runCtx, cfg, logs, func(a string) { addrCh <- a }) }()
	var base string
	select {
	case a := <-addrCh:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("run returned before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not start listening")
	}

	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var readyBody string
	waitFor(t, "/readyz 200", 30*time.Second, func() bool {
		code, body := get("/readyz")
		readyBody = body
		return code == 200
	})
	phase("ready")
	for _, s := range pipeline.AllStages() {
		if !strings.Contains(readyBody, `"`+s+`": "running"`) {
			t.Errorf("/readyz does not show %s running: %s", s, readyBody)
		}
	}

	sqsc := awssqs.NewFromConfig(awsCfg)
	send := func(queueURL, body string) {
		t.Helper()
		if _, err := sqsc.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: &queueURL, MessageBody: &body}); err != nil {
			t.Fatal(err)
		}
	}
	// Provisioning: a registry event and a connect make dev-42 ACTIVE.
	send(out.ProvisioningQueueURL, payloadOf(t, "thing-created.json"))
	send(out.ProvisioningQueueURL, payloadOf(t, "presence-connected.json"))
	db := dynamodb.NewFromConfig(awsCfg)
	waitFor(t, "dev-42 ACTIVE in "+out.DevicesTable, 30*time.Second, func() bool {
		item, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &out.DevicesTable,
			Key: map[string]ddbtypes.AttributeValue{"thingName": &ddbtypes.AttributeValueMemberS{Value: "dev-42"}}})
		if err != nil || item.Item == nil {
			return false
		}
		st, _ := item.Item["state"].(*ddbtypes.AttributeValueMemberS)
		return st != nil && st.Value == "ACTIVE"
	})

	phase("device active")
	// A poison message goes to the provisioning dead-letter queue with its reason.
	send(out.ProvisioningQueueURL, `{"eventType":"THING_EVENT","operation":"CREATED"}`)
	var reason, kind string
	waitFor(t, "dead-lettered message", 30*time.Second, func() bool {
		r, err := sqsc.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: &out.ProvisioningDLQURL,
			WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
		if err != nil || len(r.Messages) == 0 {
			return false
		}
		m := r.Messages[0]
		reason = aws.ToString(m.MessageAttributes[pipeline.MetadataDLQReason].StringValue)
		kind = aws.ToString(m.MessageAttributes[pipeline.MetadataDLQKind].StringValue)
		return true
	})
	if kind != pipeline.KindPermanent || !strings.Contains(reason, "thingName") {
		t.Errorf("dead-letter kind %q reason %q, want permanent naming the missing thingName", kind, reason)
	}

	phase("dead-lettered")
	// Archival: a telemetry record becomes an object under telemetry/.
	kc := awskinesis.NewFromConfig(awsCfg)
	if _, err := kc.PutRecord(ctx, &awskinesis.PutRecordInput{StreamName: &out.TelemetryStreamName,
		PartitionKey: aws.String("dev-42"), Data: []byte(payloadOf(t, "telemetry.json"))}); err != nil {
		t.Fatal(err)
	}
	s3c := s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = true })
	waitFor(t, "archived telemetry object", 60*time.Second, func() bool {
		l, err := s3c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &out.ArchiveBucket, Prefix: aws.String("telemetry/")})
		return err == nil && len(l.Contents) > 0
	})

	phase("archived")

	// A poison telemetry record is dead-lettered by both Kinesis consumer groups, with the shard and
	// sequence number in the original metadata.
	if _, err := kc.PutRecord(ctx, &awskinesis.PutRecordInput{StreamName: &out.TelemetryStreamName,
		PartitionKey: aws.String("dev-42"), Data: []byte(`{"temperature": "hot"`)}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{out.AlertingDLQURL, out.ArchivalDLQURL} {
		var orig, kind string
		waitFor(t, "telemetry dead-lettered to "+q, 30*time.Second, func() bool {
			r, err := sqsc.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: &q,
				WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
			if err != nil || len(r.Messages) == 0 {
				return false
			}
			m := r.Messages[0]
			orig = aws.ToString(m.MessageAttributes[pipeline.MetadataDLQOriginalMetadata].StringValue)
			kind = aws.ToString(m.MessageAttributes[pipeline.MetadataDLQKind].StringValue)
			return true
		})
		if kind != pipeline.KindPermanent || !strings.Contains(orig, `"kinesis.shard_id"`) || !strings.Contains(orig, `"kinesis.sequence_number"`) {
			t.Errorf("%s: kind %q, original metadata %s", q, kind, orig)
		}
	}
	phase("telemetry dead-lettered")
	code, metrics := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`thingpipe_messages_acked_total{stage="provisioning"} 2`,
		`thingpipe_messages_dead_lettered_total{kind="permanent",stage="provisioning"} 1`,
		`thingpipe_messages_acked_total{stage="archival"} 1`,
		`thingpipe_messages_dead_lettered_total{kind="permanent",stage="alerting"} 1`,
		`thingpipe_messages_dead_lettered_total{kind="permanent",stage="archival"} 1`,
		`thingpipe_kinesis_lag_seconds{group="archival"`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop after its context was cancelled")
	}
	phase("stopped")
	if !strings.Contains(logs.String(), `"msg":"pipeline stopped"`) {
		t.Error("no clean pipeline stop in the logs")
	}
}

// payloadOf returns the MQTT payload of a sample in testdata/messages, as an IoT rule sends it.
func payloadOf(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../testdata/messages/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return string(m.Payload)
}

// Bad configuration fails before anything starts, with exit code 2 and the key named.
func TestRunRejectsBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/thingpipe.yaml"
	if err := os.WriteFile(file, []byte("alerting:\n  policies:\n    - {name: hot, metric: temperature, op: above}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"flag", []string{"run", "--stages", "alerting,billing"}, nil, `config: stages[1]: unknown stage "billing"`},
		{"file", []string{"run", "--config", file}, nil, "config: alerting.policies[0].threshold: must be set"},
		{"env file", []string{"run"}, map[string]string{"THINGPIPE_CONFIG": file}, "config: alerting.policies[0].threshold: must be set"},
		{"env key", []string{"run"}, map[string]string{"THINGPIPE_SHUTDOWN_TIMEOUT": "soon"}, "config: shutdown_timeout (from THINGPIPE_SHUTDOWN_TIMEOUT)"},
		{"flag beats env", []string{"run", "--http-addr", "nohost"}, map[string]string{"THINGPIPE_HTTP_ADDR": ":1"}, `config: http_addr: must be host:port, got "nohost"`},
		{"missing file", []string{"run", "--config", dir + "/none.yaml"}, nil, "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			root := newRootCmd()
			root.SetArgs(tt.args)
			root.SetOut(io.Discard)
			root.SetErr(io.Discard)
			err := root.ExecuteContext(context.Background())
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("run %v = %v, want exit code 2 and %q", tt.args, err, tt.want)
			}
		})
	}
}
