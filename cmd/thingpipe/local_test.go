package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/eclipse/paho.golang/paho"

	"github.com/thingpipe/thingpipe/broker"
	"github.com/thingpipe/thingpipe/internal/moto"
	"github.com/thingpipe/thingpipe/pipeline"
)

// TestLocalEndToEnd starts `thingpipe local --devices 0` against a moto of its own, drives it over
// TCP with a real MQTT client as devices and an app would, and checks every outcome where a user would
// look for it: DynamoDB, S3, the alert inbox subscribed to SNS, and the dead-letter queue.
func TestLocalEndToEnd(t *testing.T) {
	srv := startMoto(t)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdoutR, stdoutW := io.Pipe()
	var stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- runLocal(ctx, stdoutW, &stderr, localFlags{
			awsEndpoint: srv.Endpoint, mqttAddr: "127.0.0.1:0", httpAddr: "127.0.0.1:0",
			rulesDir: "../../deploy/rules", progress: time.Second,
		})
		stdoutW.Close()
	}()
	mqttAddr, httpAddr := waitUp(t, stdoutR, done, &stderr)
	go func() { _, _ = io.Copy(io.Discard, stdoutR) }()

	if code := httpStatus(t, "http://"+httpAddr+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d once up, want 200", code)
	}

	// A device is registered (standing in for AWS IoT's registry), connects as itself and runs hot.
	const thing, user = "dev-e2e", "user-e2e"
	registry := mqttConnect(t, mqttAddr, "registry-e2e")
	created, _ := json.Marshal(broker.NewThingCreatedEvent(moto.AccountID, thing, "ev-1", map[string]string{"mac": "0c:8b:95:00:00:01"}, time.Now()))
	mqttPublish(t, registry, broker.ThingCreatedTopic(thing), created)
	device := mqttConnect(t, mqttAddr, thing)
	for i, temp := range []float64{93.1, 94.0, 95.2, 96.0} {
		mqttPublish(t, device, "dt/"+thing+"/telemetry", fmt.Appendf(nil, `{"temperature": %v, "battery": 80, "ts": %d}`, temp, 1795441762000+int64(i)))
	}
	// The app asks to bind the device, and sends one request that is not a binding request at all.
	app := mqttConnect(t, mqttAddr, "app-"+user)
	mqttPublish(t, app, "app/"+user+"/bind", []byte(`{"requestId": 42}`))
	mqttPublish(t, app, "app/"+user+"/bind", []byte(`{"requestId": "req-e2e", "thingName": "`+thing+`"}`))

	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A thing created through the IoT API produces its registry event too, as in AWS IoT.
	const iotThing = "dev-e2e-iot"
	if _, err := iot.NewFromConfig(cfg).CreateThing(ctx, &iot.CreateThingInput{ThingName: aws.String(iotThing)}); err != nil {
		t.Fatalf("CreateThing: %v", err)
	}
	mqttConnect(t, mqttAddr, iotThing)

	ddb := dynamodb.NewFromConfig(cfg)
	eventually(t, "thing created through the IoT API is ACTIVE", func() (bool, string) {
		item := getItem(t, ddb, "thingpipe-devices", "thingName", iotThing)
		return attrString(item, "state") == "ACTIVE", fmt.Sprint(item)
	})
	eventually(t, "device ACTIVE in thingpipe-devices", func() (bool, string) {
		item := getItem(t, ddb, "thingpipe-devices", "thingName", thing)
		return attrString(item, "state") == "ACTIVE", fmt.Sprint(item)
	})
	eventually(t, "binding in thingpipe-bindings", func() (bool, string) {
		item := getItem(t, ddb, "thingpipe-bindings", "thingName", thing)
		return attrString(item, "userId") == user, fmt.Sprint(item)
	})

	sq := sqs.NewFromConfig(cfg)
	// Received emails stay hidden for the queue's visibility timeout, so they are tallied as they come.
	var fired int
	var subjects []string
	firing := func() (int, []string) {
		for _, b := range receiveAll(t, sq, inboxQueue) {
			var note struct{ Subject string }
			_ = json.Unmarshal([]byte(b), &note)
			subjects = append(subjects, note.Subject)
			if strings.HasPrefix(note.Subject, "[CRITICAL] temperature 9") && strings.HasSuffix(note.Subject, " > 80 on "+thing) {
				fired++
			}
		}
		return fired, subjects
	}
	eventually(t, "a FIRING alert email in the inbox", func() (bool, string) {
		n, subjects := firing()
		return n > 0, fmt.Sprint(subjects)
	})
	eventually(t, "bad bind request in thingpipe-binding-dlq with its reason", func() (bool, string) {
		msgs := receiveMessages(t, sq, "thingpipe-binding-dlq")
		for _, m := range msgs {
			reason := m.MessageAttributes[pipeline.MetadataDLQReason]
			if strings.Contains(aws.ToString(m.Body), `"requestId":42`) && reason.StringValue != nil && *reason.StringValue != "" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d messages", len(msgs))
	})

	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	eventually(t, "every telemetry record archived in S3", func() (bool, string) {
		lines := archivedLines(t, s3c, "thingpipe-archive", thing)
		return len(lines) == 4, fmt.Sprintf("%d lines: %v", len(lines), lines)
	})

	// Four hot readings are one incident: exactly one email.
	if n, subjects := firing(); n != 1 {
		t.Errorf("%d FIRING emails for one incident, want 1: %v", n, subjects)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("thingpipe local did not stop cleanly: %v\n%s", err, stderr.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("thingpipe local did not stop within 90s after cancel\n%s", stderr.String())
	}
}

// waitUp reads runLocal's output until it says it is up, and returns the MQTT and HTTP addresses.
func waitUp(t *testing.T, r io.Reader, done <-chan error, stderr *lockedBuffer) (mqttAddr, httpAddr string) {
	t.Helper()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
			if strings.HasPrefix(sc.Text(), "thingpipe local is up") {
				return
			}
		}
	}()
	timeout := time.After(3 * time.Minute)
	for {
		select {
		case l := <-lines:
			if _, err := fmt.Sscanf(l, "thingpipe local is up: MQTT on %s health on http://%s", &mqttAddr, &httpAddr); err == nil {
				return strings.TrimSuffix(mqttAddr, ","), strings.TrimSuffix(strings.TrimSuffix(httpAddr, ","), "/readyz")
			}
		case err := <-done:
			t.Fatalf("thingpipe local stopped before it was up: %v\n%s", err, stderr.String())
		case <-timeout:
			t.Fatalf("thingpipe local not up after 3 minutes\n%s", stderr.String())
		}
	}
}

func mqttConnect(t *testing.T, addr, clientID string) *paho.Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dialing the broker: %v", err)
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: clientID, Conn: conn})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatalf("MQTT connect as %s: %v", clientID, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

func mqttPublish(t *testing.T, c *paho.Client, topic string, payload []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload}); err != nil {
		t.Fatalf("publish to %s: %v", topic, err)
	}
}

// eventually polls cond until it holds, failing with its last description after a minute.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var last string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s: not within a minute; last seen: %s", what, last)
}

func getItem(t *testing.T, c *dynamodb.Client, table, key, value string) map[string]ddbtypes.AttributeValue {
	t.Helper()
	out, err := c.GetItem(t.Context(), &dynamodb.GetItemInput{
		TableName: aws.String(table), ConsistentRead: aws.Bool(true),
		Key: map[string]ddbtypes.AttributeValue{key: &ddbtypes.AttributeValueMemberS{Value: value}},
	})
	if err != nil {
		t.Fatalf("GetItem %s: %v", table, err)
	}
	return out.Item
}

func attrString(item map[string]ddbtypes.AttributeValue, name string) string {
	if v, ok := item[name].(*ddbtypes.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func receiveMessages(t *testing.T, c *sqs.Client, queue string) []sqstypes.Message {
	t.Helper()
	url, err := c.GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String(queue)})
	if err != nil {
		t.Fatalf("GetQueueUrl %s: %v", queue, err)
	}
	out, err := c.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{
		QueueUrl: url.QueueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 300,
		MessageAttributeNames: []string{"All"},
	})
	if err != nil {
		t.Fatalf("ReceiveMessage %s: %v", queue, err)
	}
	return out.Messages
}

func receiveAll(t *testing.T, c *sqs.Client, queue string) []string {
	t.Helper()
	var bodies []string
	for _, m := range receiveMessages(t, c, queue) {
		bodies = append(bodies, aws.ToString(m.Body))
	}
	return bodies
}

// archivedLines returns the NDJSON lines for thing in every archive object.
func archivedLines(t *testing.T, c *s3.Client, bucket, thing string) []string {
	t.Helper()
	list, err := c.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("telemetry/dt=")})
	if err != nil {
		t.Fatalf("ListObjectsV2: %v", err)
	}
	var lines []string
	for _, obj := range list.Contents {
		got, err := c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: obj.Key})
		if err != nil {
			t.Fatalf("GetObject %s: %v", aws.ToString(obj.Key), err)
		}
		zr, err := gzip.NewReader(got.Body)
		if err != nil {
			t.Fatalf("%s is not gzip: %v", aws.ToString(obj.Key), err)
		}
		data, err := io.ReadAll(zr)
		got.Body.Close()
		if err != nil {
			t.Fatalf("reading %s: %v", aws.ToString(obj.Key), err)
		}
		for _, l := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			if bytes.Contains(l, []byte(`"thingName":"`+thing+`"`)) {
				lines = append(lines, string(l))
			}
		}
	}
	return lines
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || time.Now().After(deadline) {
				return resp.StatusCode
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
