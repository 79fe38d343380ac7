package bridge

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kinesistypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/thingpipe/thingpipe/internal/apicalls"
	"github.com/thingpipe/thingpipe/internal/awstest"
	"github.com/thingpipe/thingpipe/rules"
	"github.com/thingpipe/thingpipe/rules/iotsql"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

// quiet drops the bridge's logs: the tests assert on results, and expected failures are logged.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func createQueue(t *testing.T, c *sqs.Client, name string) string {
	t.Helper()
	out, err := c.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.QueueUrl)
}

// receiveOne waits for one message on a queue, deletes it and returns its body.
func receiveOne(t *testing.T, c *sqs.Client, url string) string {
	t.Helper()
	ctx := context.Background()
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 1 {
		t.Fatalf("queue %s: %d messages, want 1", url, len(out.Messages))
	}
	if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: out.Messages[0].ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.Messages[0].Body)
}

func assertEmpty(t *testing.T, c *sqs.Client, url string) {
	t.Helper()
	out, err := c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 0 {
		t.Errorf("queue %s: unexpected message %s", url, aws.ToString(out.Messages[0].Body))
	}
}

func sample(t *testing.T, name string) *iotsql.Message {
	t.Helper()
	m, err := rules.ReadSampleMessage(filepath.Join("../../testdata/messages", name))
	if err != nil {
		t.Fatal(err)
	}
	return m.Message(rules.LocalEnv)
}

func jsonObject(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return m
}

// The default rule set, resolved for moto's account, against moto's queues and stream with the
// contract's names (only this test uses them).
func TestDefaultRuleSetDelivers(t *testing.T) {
	ctx := context.Background()
	cfg := awstest.Config(t)
	calls := apicalls.New()
	calls.Instrument(&cfg)
	rs, err := rules.LoadRules("../../deploy/rules", rules.LocalEnv)
	if err != nil {
		t.Fatal(err)
	}
	sq := sqs.NewFromConfig(cfg)
	binding := createQueue(t, sq, "thingpipe-binding")
	provisioning := createQueue(t, sq, "thingpipe-provisioning")
	ruleErrors := createQueue(t, sq, "thingpipe-rule-errors")
	kc := kinesis.NewFromConfig(cfg)
	if _, err := kc.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String("thingpipe-telemetry"), ShardCount: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{AWS: cfg, Rules: rs, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}

	// Telemetry: one Kinesis record keyed by the thing, carrying the thing name from the topic.
	res := b.Handle(ctx, sample(t, "telemetry.json"))
	if len(res) != 1 || res[0].Rule != "thingpipe_telemetry" || len(res[0].Failures) != 0 || res[0].Actions != 1 {
		t.Fatalf("telemetry: %+v", res)
	}
	shards, err := kc.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String("thingpipe-telemetry")})
	if err != nil {
		t.Fatal(err)
	}
	it, err := kc.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String("thingpipe-telemetry"),
		ShardId: shards.Shards[0].ShardId, ShardIteratorType: kinesistypes.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := kc.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: it.ShardIterator})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs.Records) != 1 {
		t.Fatalf("%d records, want 1", len(recs.Records))
	}
	if pk := aws.ToString(recs.Records[0].PartitionKey); pk != "dev-42" {
		t.Errorf("partition key %q, want dev-42", pk)
	}
	rec := jsonObject(t, string(recs.Records[0].Data))
	if rec["thingName"] != "dev-42" || rec["temperature"] != 21.5 {
		t.Errorf("record = %v", rec)
	}

	// Bind: the user comes from the topic even when the payload names another.
	m := sample(t, "bind.json")
	m.Payload = []byte(`{"requestId":"req-9","thingName":"dev-42","userId":"user-attacker"}`)
	res = b.Handle(ctx, m)
	if len(res) != 1 || res[0].Rule != "thingpipe_bind" || len(res[0].Failures) != 0 {
		t.Fatalf("bind: %+v", res)
	}
	body := jsonObject(t, receiveOne(t, sq, binding))
	if body["userId"] != "user-7" || body["thingName"] != "dev-42" || body["requestId"] != "req-9" || len(body) != 3 {
		t.Errorf("binding message = %v", body)
	}

	// Registry and presence events both reach the provisioning queue unchanged.
	for _, name := range []string{"thing-created.json", "presence-connected.json"} {
		m := sample(t, name)
		if res := b.Handle(ctx, m); len(res) != 1 || len(res[0].Failures) != 0 {
			t.Fatalf("%s: %+v", name, res)
		}
		got := jsonObject(t, receiveOne(t, sq, provisioning))
		want := jsonObject(t, string(m.Payload))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: provisioning message %v, want %v", name, got, want)
		}
	}

	// A topic no rule matches does nothing.
	if res := b.Handle(ctx, &iotsql.Message{Topic: "dt/dev-42/status", Payload: []byte(`{}`)}); len(res) != 0 {
		t.Errorf("unmatched topic: %+v", res)
	}
	assertEmpty(t, sq, ruleErrors)
	// Queue URLs are resolved once per queue, then cached.
	if n := calls.Get("SQS", "GetQueueUrl"); n != 2 {
		t.Errorf("GetQueueUrl calls = %d, want 2 (binding, provisioning)", n)
	}
}

func writeRule(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFailedActionRunsErrorAction(t *testing.T) {
	ctx := context.Background()
	cfg := awstest.Config(t)
	sq := sqs.NewFromConfig(cfg)
	okName, missing, errName := awstest.Name(t, "ok"), awstest.Name(t, "missing"), awstest.Name(t, "errors")
	okURL := createQueue(t, sq, okName)
	errURL := createQueue(t, sq, errName)
	dir := t.TempDir()
	writeRule(t, dir, "r", fmt.Sprintf(`
name: failing_rule
sql: SELECT * FROM 'fail/+'
actions:
  - sqs: {queueUrl: "https://sqs.{{region}}.{{urlSuffix}}/{{account}}/%s", roleArn: r}
  - sqs: {queueUrl: "https://sqs.{{region}}.{{urlSuffix}}/{{account}}/%s", roleArn: r}
errorAction:
  sqs: {queueUrl: "https://sqs.{{region}}.{{urlSuffix}}/{{account}}/%s", roleArn: r}
`, missing, okName, errName))
	rs, err := rules.LoadRules(dir, rules.LocalEnv)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{AWS: cfg, Rules: rs, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"v":1}`)
	res := b.Handle(ctx, &iotsql.Message{Topic: "fail/x", ClientID: "dev-1", Payload: payload})
	if len(res) != 1 || len(res[0].Failures) != 1 || res[0].ErrorAction != nil || res[0].Actions != 2 {
		t.Fatalf("result: %+v", res)
	}
	// The action that worked still delivered.
	if got := receiveOne(t, sq, okURL); got != `{"v":1}` {
		t.Errorf("ok queue got %s", got)
	}
	var em ErrorMessage
	if err := json.Unmarshal([]byte(receiveOne(t, sq, errURL)), &em); err != nil {
		t.Fatal(err)
	}
	missingURL := "https://sqs.us-east-1.amazonaws.com/123456789012/" + missing
	if em.RuleName != "failing_rule" || em.Topic != "fail/x" || em.ClientID != "dev-1" || em.CloudwatchTraceID == "" ||
		em.Base64OriginalPayload != base64.StdEncoding.EncodeToString(payload) || len(em.Failures) != 1 {
		t.Fatalf("error message: %+v", em)
	}
	f := em.Failures[0]
	if f.FailedAction != "SqsAction" || f.FailedResource != missingURL || !strings.Contains(f.ErrorMessage, missing) ||
		!strings.Contains(f.ErrorMessage, "Message arrived on: fail/x") {
		t.Errorf("failure: %+v", f)
	}
	assertEmpty(t, sq, errURL)
}

func TestErrorActionFailureIsReported(t *testing.T) {
	cfg := awstest.Config(t)
	dir := t.TempDir()
	writeRule(t, dir, "r", fmt.Sprintf(`
name: doubly_failing
sql: SELECT * FROM 'f2/+'
actions:
  - kinesis: {streamName: %s, partitionKey: "${topic(2)}", roleArn: r}
errorAction:
  sqs: {queueUrl: "https://sqs.{{region}}.{{urlSuffix}}/{{account}}/%s", roleArn: r}
`, awstest.Name(t, "nostream"), awstest.Name(t, "noqueue")))
	rs, err := rules.LoadRules(dir, rules.LocalEnv)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{AWS: cfg, Rules: rs, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	res := b.Handle(context.Background(), &iotsql.Message{Topic: "f2/a", Payload: []byte(`{}`)})
	if len(res) != 1 || len(res[0].Failures) != 1 || res[0].Failures[0].FailedAction != "KinesisAction" || res[0].ErrorAction == nil {
		t.Fatalf("result: %+v", res)
	}
}

type recordingRepublisher struct {
	mu    sync.Mutex
	calls []string
}

func (r *recordingRepublisher) Republish(_ context.Context, topic string, payload []byte, qos byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf("%s qos%d %s", topic, qos, payload))
	return nil
}

func TestSNSDynamoDBRepublishAndBase64(t *testing.T) {
	ctx := context.Background()
	cfg := awstest.Config(t)
	sq := sqs.NewFromConfig(cfg)
	sn := sns.NewFromConfig(cfg)
	ddb := dynamodb.NewFromConfig(cfg)

	b64Name, subName, table := awstest.Name(t, "b64"), awstest.Name(t, "sub"), awstest.Name(t, "tbl")
	b64URL := createQueue(t, sq, b64Name)
	subURL := createQueue(t, sq, subName)
	topic, err := sn.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(awstest.Name(t, "topic"))})
	if err != nil {
		t.Fatal(err)
	}
	_, err = sn.Subscribe(ctx, &sns.SubscribeInput{TopicArn: topic.TopicArn, Protocol: aws.String("sqs"),
		Endpoint: aws.String("arn:aws:sqs:us-east-1:123456789012:" + subName), Attributes: map[string]string{"RawMessageDelivery": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		BillingMode:          ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("thingName"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("thingName"), KeyType: ddbtypes.KeyTypeHash}},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeRule(t, dir, "r", fmt.Sprintf(`
name: fan_out
sql: SELECT topic(2) AS thingName, temperature, tags, ok FROM 'fan/+'
awsIotSqlVersion: "2016-03-23"
actions:
  - sqs: {queueUrl: "https://sqs.{{region}}.{{urlSuffix}}/{{account}}/%s", roleArn: r, useBase64: true}
  - sns: {targetArn: %q, roleArn: r, messageFormat: RAW}
  - dynamoDBv2: {putItem: {tableName: %q}, roleArn: r}
  - republish: {topic: "mirror/${topic(2)}/${clientid()}", qos: 1, roleArn: r}
`, b64Name, aws.ToString(topic.TopicArn), table))
	rs, err := rules.LoadRules(dir, rules.LocalEnv)
	if err != nil {
		t.Fatal(err)
	}
	rp := &recordingRepublisher{}
	b, err := New(Config{AWS: cfg, Rules: rs, Republisher: rp, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	res := b.Handle(ctx, &iotsql.Message{Topic: "fan/dev-7", ClientID: "c1",
		Payload: []byte(`{"temperature": 21.25, "tags": ["a", 1], "ok": true, "ignored": 1}`)})
	if len(res) != 1 || len(res[0].Failures) != 0 || res[0].Actions != 4 {
		t.Fatalf("result: %+v", res)
	}
	want := `{"thingName":"dev-7","temperature":21.25,"tags":["a",1],"ok":true}`

	raw, err := base64.StdEncoding.DecodeString(receiveOne(t, sq, b64URL))
	if err != nil || string(raw) != want {
		t.Errorf("base64 SQS body decodes to %s (%v), want %s", raw, err, want)
	}
	if got := receiveOne(t, sq, subURL); got != want {
		t.Errorf("SNS delivered %s, want %s", got, want)
	}
	item, err := ddb.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table),
		Key: map[string]ddbtypes.AttributeValue{"thingName": &ddbtypes.AttributeValueMemberS{Value: "dev-7"}}})
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := item.Item["temperature"].(*ddbtypes.AttributeValueMemberN); !ok || n.Value != "21.25" {
		t.Errorf("temperature attribute = %#v", item.Item["temperature"])
	}
	if l, ok := item.Item["tags"].(*ddbtypes.AttributeValueMemberL); !ok || len(l.Value) != 2 {
		t.Errorf("tags attribute = %#v", item.Item["tags"])
	}
	if bv, ok := item.Item["ok"].(*ddbtypes.AttributeValueMemberBOOL); !ok || !bv.Value {
		t.Errorf("ok attribute = %#v", item.Item["ok"])
	}
	if len(rp.calls) != 1 || rp.calls[0] != "mirror/dev-7/c1 qos1 "+want {
		t.Errorf("republished %v", rp.calls)
	}
}

// A qos other than 0 or 1 fails the action (rules lint reports it too) instead of wrapping into a
// byte: 256 would otherwise republish at qos 0, and -1 at 255.
func TestRepublishRefusesQoSOutOfRange(t *testing.T) {
	for _, qos := range []int{-1, 2, 256} {
		t.Run(fmt.Sprint(qos), func(t *testing.T) {
			dir := t.TempDir()
			writeRule(t, dir, "r", fmt.Sprintf(`
name: bad_qos
sql: SELECT * FROM 'q/+'
actions:
  - republish: {topic: "mirror/${topic(2)}", qos: %d, roleArn: r}
`, qos))
			rs, err := rules.LoadRules(dir, rules.LocalEnv)
			if err != nil {
				t.Fatal(err)
			}
			rp := &recordingRepublisher{}
			b, err := New(Config{AWS: awstest.Config(t), Rules: rs, Republisher: rp, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			res := b.Handle(context.Background(), &iotsql.Message{Topic: "q/dev-1", Payload: []byte(`{}`)})
			if len(res) != 1 || len(res[0].Failures) != 1 {
				t.Fatalf("result: %+v", res)
			}
			if msg, want := res[0].Failures[0].ErrorMessage, fmt.Sprintf("qos %d, must be 0 or 1", qos); !strings.Contains(msg, want) {
				t.Errorf("failure %q does not contain %q", msg, want)
			}
			if len(rp.calls) != 0 {
				t.Errorf("republished %v", rp.calls)
			}
		})
	}
}

// A binary payload that SELECT * passes on cannot go to SQS as text: SQS refuses it, so the action
// fails and the errorAction receives the original payload (base64), as in AWS. With useBase64 it goes.
func TestBinaryPayloadToSQSRunsErrorAction(t *testing.T) {
	ctx := context.Background()
	cfg := awstest.Config(t)
	sq := sqs.NewFromConfig(cfg)
	textName, b64Name, errName := awstest.Name(t, "text"), awstest.Name(t, "b64"), awstest.Name(t, "errors")
	textURL, b64URL, errURL := createQueue(t, sq, textName), createQueue(t, sq, b64Name), createQueue(t, sq, errName)
	dir := t.TempDir()
	writeRule(t, dir, "r", fmt.Sprintf(`
name: binary_rule
sql: SELECT * FROM 'bin/+'
actions:
  - sqs: {queueUrl: "https://sqs.{{region}}.{{urlSuffix}}/{{account}}/%s", roleArn: r, useBase64: false}
  - sqs: {queueUrl: "https://sqs.{{region}}.{{urlSuffix}}/{{account}}/%s", roleArn: r, useBase64: true}
errorAction:
  sqs: {queueUrl: "https://sqs.{{region}}.{{urlSuffix}}/{{account}}/%s", roleArn: r}
`, textName, b64Name, errName))
	rs, err := rules.LoadRules(dir, rules.LocalEnv)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{AWS: cfg, Rules: rs, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for _, payload := range [][]byte{
		[]byte("{\"thingName\":\"dev-\xff\xfe\"}"), // invalid UTF-8
		[]byte("\x00\x01binary"),                   // UTF-8, but not characters SQS takes
	} {
		res := b.Handle(ctx, &iotsql.Message{Topic: "bin/x", ClientID: "dev-1", Payload: payload})
		if len(res) != 1 || res[0].Err != nil || len(res[0].Failures) != 1 || res[0].ErrorAction != nil {
			t.Fatalf("%q: result %+v", payload, res)
		}
		if !strings.Contains(res[0].Failures[0].ErrorMessage, "InvalidMessageContents") {
			t.Errorf("%q: failure %+v", payload, res[0].Failures[0])
		}
		var em ErrorMessage
		if err := json.Unmarshal([]byte(receiveOne(t, sq, errURL)), &em); err != nil {
			t.Fatal(err)
		}
		if em.Base64OriginalPayload != base64.StdEncoding.EncodeToString(payload) {
			t.Errorf("%q: errorAction got payload %s", payload, em.Base64OriginalPayload)
		}
		if got := receiveOne(t, sq, b64URL); got != base64.StdEncoding.EncodeToString(payload) {
			t.Errorf("%q: useBase64 queue got %q", payload, got)
		}
		assertEmpty(t, sq, textURL)
	}
}

func TestNonJSONPayloadIsAnEvaluationError(t *testing.T) {
	cfg := awstest.Config(t)
	rs, err := rules.LoadRules("../../deploy/rules", rules.LocalEnv)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{AWS: cfg, Rules: rs, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res := b.Handle(ctx, &iotsql.Message{Topic: "app/u1/bind", Payload: []byte("not json")})
	if len(res) != 1 || res[0].Err == nil || res[0].Actions != 0 {
		t.Fatalf("result: %+v", res)
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "Region") {
		t.Errorf("no region: %v", err)
	}
	if _, err := New(Config{AWS: aws.Config{Region: "us-east-1"}, Rules: []*rules.Rule{{Name: "x"}}}); err == nil || !strings.Contains(err.Error(), "Rules[0]") {
		t.Errorf("unresolved rule: %v", err)
	}
}

func TestItem(t *testing.T) {
	if _, err := Item([]byte(`[1]`)); err == nil {
		t.Error("an array became an item")
	}
	item, err := Item([]byte(`{"a":null,"m":{"x":"y"},"f":1.5}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := item["a"].(*ddbtypes.AttributeValueMemberNULL); !ok {
		t.Errorf("null: %#v", item["a"])
	}
	if m, ok := item["m"].(*ddbtypes.AttributeValueMemberM); !ok || m.Value["x"].(*ddbtypes.AttributeValueMemberS).Value != "y" {
		t.Errorf("map: %#v", item["m"])
	}
	if n := item["f"].(*ddbtypes.AttributeValueMemberN).Value; n != "1.5" {
		t.Errorf("number: %s", n)
	}
}

// Handle is safe for concurrent use: many messages at once all arrive, once each.
func TestConcurrentHandle(t *testing.T) {
	cfg := awstest.Config(t)
	sq := sqs.NewFromConfig(cfg)
	name := awstest.Name(t, "conc")
	url := createQueue(t, sq, name)
	dir := t.TempDir()
	writeRule(t, dir, "r", fmt.Sprintf(`
name: concurrent
sql: SELECT n FROM 'conc/+'
actions:
  - sqs: {queueUrl: "https://sqs.{{region}}.{{urlSuffix}}/{{account}}/%s", roleArn: r}
`, name))
	rs, err := rules.LoadRules(dir, rules.LocalEnv)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{AWS: cfg, Rules: rs, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	const n = 12
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := b.Handle(context.Background(), &iotsql.Message{Topic: "conc/x", Payload: fmt.Appendf(nil, `{"n":%d}`, i)})
			if len(res) != 1 || len(res[0].Failures) != 0 {
				t.Errorf("message %d: %+v", i, res)
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for len(seen) < n {
		out, err := sq.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			break
		}
		for _, m := range out.Messages {
			if seen[aws.ToString(m.Body)] {
				t.Errorf("duplicate %s", aws.ToString(m.Body))
			}
			seen[aws.ToString(m.Body)] = true
			if _, err := sq.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct messages arrived, want %d", len(seen), n)
	}
}
