package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/eclipse/paho.golang/paho"

	"github.com/thingpipe/thingpipe/broker"
	"github.com/thingpipe/thingpipe/internal/moto"
	"github.com/thingpipe/thingpipe/pipeline"
)

// Markers that must never reach the logs: the AWS secret key in the environment and a field of
// message payloads that no error message has reason to quote.
const (
	secretMarker  = "SECRETMARKERd41d8cd98f00b204e9800998ecf8427e"
	payloadMarker = "PAYLOADMARKER7f3c2a"
)

// hostileCase is one bad message and where it must end up.
type hostileCase struct {
	name    string
	topic   string
	file    string // from testdata/bad; or payload
	payload []byte
	// Exactly one of these says where the message ends up.
	dlq       []string // stages whose dead-letter queues receive it, with reason containing reason
	reason    string
	ruleError string // no stage sees it: the rule cannot evaluate the payload; the bridge logs this
	refused   bool   // the broker refuses it (over AWS IoT's 128 KiB payload limit)
	// errorAction: a rule action fails on it; its errorAction sends it to thingpipe-rule-errors, with
	// a failure message containing this
	errorAction string
}

const (
	hostileThing = "dev-hostile"
	hostileUser  = "user-hostile"
	registryT    = "$aws/events/thing/" + hostileThing + "/created"
	presenceT    = "$aws/events/presence/connected/" + hostileThing
	telemetryT   = "dt/" + hostileThing + "/telemetry"
	bindT        = "app/" + hostileUser + "/bind"
)

// noiseMessages of 128 KiB go to a topic no rule takes (40 MiB): more than the heap may grow by.
const noiseMessages = 320

// telemetryGroups are the Kinesis consumer groups: each decodes every record.
var telemetryGroups = []string{"alerting", "archival"}

var hostileCases = []hostileCase{
	// Payloads the rules engine cannot read as JSON: AWS IoT SQL fails to evaluate; no action runs.
	{name: "not JSON", topic: telemetryT, file: "not-json.txt", ruleError: "not JSON"},
	{name: "truncated JSON", topic: bindT, file: "truncated.json", ruleError: "not JSON"},
	{name: "invalid UTF-8", topic: telemetryT, file: "invalid-utf8.json", ruleError: "not JSON"},
	{name: "65,000 levels deep", topic: telemetryT, payload: deep(65000), ruleError: "not JSON"},
	// ... and the same to a SELECT * rule, which passes it on as binary: the stage's decoder stops at 32 levels.
	{name: "65,000 levels deep to a SELECT * rule", topic: registryT, payload: deep(65000), dlq: []string{"provisioning"}, reason: "nested too deeply: limit 32 levels"},
	// SELECT * passes a payload that is not JSON on unchanged, as AWS IoT does (binary payloads).
	// SELECT * passes it on unchanged, as AWS IoT does with binary payloads; SQS refuses it as text,
	// so the action fails and the rule's errorAction gets it.
	{name: "invalid UTF-8 to a SELECT * rule", topic: registryT, file: "invalid-utf8.json", errorAction: "InvalidMessageContents"},

	{name: "NaN literal", topic: registryT, file: "nan-literal.json", dlq: []string{"provisioning"}, reason: "not valid JSON"},

	// JSON the rules pass on, which the stages' decoders reject: dead-lettered with the field named.
	{name: "deeply nested", topic: telemetryT, file: "deep-nesting.json", dlq: telemetryGroups, reason: "nested too deeply"},
	{name: "huge number", topic: telemetryT, file: "huge-number.json", dlq: telemetryGroups, reason: `field "temperature": number out of range`},
	{name: "ts wrong type", topic: telemetryT, file: "telemetry-ts-string.json", dlq: telemetryGroups, reason: `field "ts": wrong type`},
	{name: "NaN string metric", topic: telemetryT, file: "nan-strings.json", dlq: []string{"alerting"}, reason: `wrong type: want number, got string`},
	{name: "array at top level", topic: registryT, file: "array-top-level.json", dlq: []string{"provisioning"}, reason: "wrong type"},
	{name: "registry missing thingName", topic: registryT, file: "registry-missing-thingname.json", dlq: []string{"provisioning"}, reason: `field "thingName": missing field`},
	{name: "registry timestamp string", topic: registryT, file: "registry-timestamp-string.json", dlq: []string{"provisioning"}, reason: `field "timestamp": wrong type`},
	{name: "registry timestamp huge", topic: registryT, file: "registry-timestamp-huge.json", dlq: []string{"provisioning"}, reason: `field "timestamp": number out of range`},
	{name: "registry thing name +", topic: registryT, file: "registry-thingname-wildcard-plus.json", dlq: []string{"provisioning"}, reason: `field "thingName": invalid thing name`},
	{name: "registry thing name #", topic: registryT, file: "registry-thingname-wildcard-hash.json", dlq: []string{"provisioning"}, reason: `field "thingName": invalid thing name`},
	{name: "registry thing name /", topic: registryT, file: "registry-thingname-slash.json", dlq: []string{"provisioning"}, reason: `field "thingName": invalid thing name`},
	{name: "registry thing name control", topic: registryT, file: "registry-thingname-control.json", dlq: []string{"provisioning"}, reason: `field "thingName": invalid value`},
	{name: "registry attribute wrong type", topic: registryT, file: "registry-attributes-wrong-type.json", dlq: []string{"provisioning"}, reason: `field "attributes.mac": wrong type`},
	{name: "registry version huge", topic: registryT, file: "registry-versionnumber-huge.json", dlq: []string{"provisioning"}, reason: `field "versionNumber": number out of range`},
	{name: "presence client id wildcard", topic: presenceT, file: "presence-clientid-wildcard.json", dlq: []string{"provisioning"}, reason: `field "clientId": invalid thing name`},
	{name: "presence client id slash", topic: presenceT, file: "presence-clientid-slash.json", dlq: []string{"provisioning"}, reason: `field "clientId": invalid thing name`},
	{name: "presence missing client id", topic: presenceT, file: "presence-missing-clientid.json", dlq: []string{"provisioning"}, reason: `field "clientId": missing field`},
	{name: "presence timestamp string", topic: presenceT, file: "presence-timestamp-string.json", dlq: []string{"provisioning"}, reason: `field "timestamp": wrong type`},
	{name: "bind missing requestId", topic: bindT, file: "binding-missing-requestid.json", dlq: []string{"binding"}, reason: `field "requestId": missing field`},
	{name: "bind thing name wildcard", topic: bindT, file: "binding-thingname-wildcard.json", dlq: []string{"binding"}, reason: `field "thingName": invalid thing name`},
	{name: "bind requestId object", topic: bindT, file: "binding-requestid-object.json", dlq: []string{"binding"}, reason: `field "requestId": wrong type`},
	{name: "bind thing name number", topic: bindT, file: "binding-thingname-number.json", dlq: []string{"binding"}, reason: `field "thingName": wrong type`},
	{name: "bind user with space in topic", topic: "app/user hostile/bind", payload: []byte(`{"requestId":"r-space","thingName":"dev-good-1"}`), dlq: []string{"binding"}, reason: `field "userId": invalid value`},
	{name: "bind user with control char in topic", topic: "app/user\x01x/bind", payload: []byte(`{"requestId":"r-ctl","thingName":"dev-good-1"}`), dlq: []string{"binding"}, reason: `field "userId": invalid value`},

	// Sizes: AWS IoT accepts payloads up to 128 KiB and rejects larger ones.
	{name: "128 KiB exactly", topic: telemetryT, file: "size-128kib-exact.json"}, // accepted: archived
	{name: "128 KiB + 1", topic: telemetryT, file: "size-128kib-plus-one.json", refused: true},
	{name: "256 KiB", topic: bindT, file: "size-256kib.json", refused: true},
}

// TestLocalHostileInput drives `thingpipe local --devices 0` with hostile messages interleaved with a
// good device's life, and checks each bad one ends where a user can see it with a reason, the good
// ones all complete, the process stays up, memory stays bounded, and no secret reaches the logs.
func TestLocalHostileInput(t *testing.T) {
	srv := startMoto(t)
	// Credentials the logs must never show.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIASECRETMARKERID01")
	t.Setenv("AWS_SECRET_ACCESS_KEY", secretMarker)
	t.Setenv("AWS_SESSION_TOKEN", "session-"+secretMarker)
	t.Setenv("AWS_REGION", moto.Region)

	// Logs from packages that use slog.Default() are captured too, as JSON at info level.
	var defaultLog lockedBuffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&defaultLog, &slog.HandlerOptions{Level: slog.LevelInfo})))
	defer slog.SetDefault(prev)

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
	mqttAddr, _ := waitUp(t, stdoutR, done, &stderr)
	var stdout lockedBuffer
	go func() { _, _ = io.Copy(&stdout, stdoutR) }()

	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sq := sqs.NewFromConfig(cfg)
	eventsQueue := subscribeQueue(t, cfg, "hostile-events", "arn:aws:sns:"+moto.Region+":"+moto.AccountID+":thingpipe-events")
	heapBefore := heapInuse()

	// The good device's life, with hostile messages between its steps. dev-good-2 connects before it
	// is registered; dev-good-1's registry event is replayed.
	const good1, good2, goodUser = "dev-good-1", "dev-good-2", "user-good"
	registry := mqttConnect(t, mqttAddr, "registry-hostile")
	created := func(thing string) []byte {
		b, _ := json.Marshal(broker.NewThingCreatedEvent(moto.AccountID, thing, "ev-"+thing, map[string]string{"mac": "0c:8b:95:00:00:02"}, time.Now()))
		return b
	}
	attacker := mqttConnect(t, mqttAddr, hostileThing)
	send := func(c hostileCase) {
		p := load(t, c)
		if c.refused {
			// The broker closes the connection of a client that publishes over the limit, as AWS IoT
			// does; a fresh client sends it.
			cl := mqttConnect(t, mqttAddr, "oversize-"+fmt.Sprint(len(p)))
			pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
			defer pcancel()
			_, err := cl.Publish(pctx, &paho.Publish{Topic: c.topic, QoS: 1, Payload: p})
			if err == nil {
				t.Errorf("%s: publish of %d bytes acknowledged, want refused", c.name, len(p))
			}
			return
		}
		mqttPublish(t, attacker, c.topic, p)
	}
	third := len(hostileCases) / 3
	for _, c := range hostileCases[:third] {
		send(c)
	}
	mqttPublish(t, registry, broker.ThingCreatedTopic(good1), created(good1))
	device2 := mqttConnect(t, mqttAddr, good2) // connected before created
	_ = device2
	device1 := mqttConnect(t, mqttAddr, good1)
	for _, c := range hostileCases[third : 2*third] {
		send(c)
	}
	for i, temp := range []float64{21.5, 22.0, 22.5} {
		mqttPublish(t, device1, "dt/"+good1+"/telemetry", fmt.Appendf(nil, `{"temperature": %v, "battery": 80, "ts": %d, "note": %q}`, temp, 1795441762000+int64(i), payloadMarker))
	}
	mqttPublish(t, registry, broker.ThingCreatedTopic(good1), created(good1)) // created twice
	mqttPublish(t, registry, broker.ThingCreatedTopic(good2), created(good2))
	for _, c := range hostileCases[2*third:] {
		send(c)
	}
	app := mqttConnect(t, mqttAddr, "app-"+goodUser)
	mqttPublish(t, app, "app/"+goodUser+"/bind", []byte(`{"requestId": "req-good", "thingName": "`+good1+`", "secret": "`+payloadMarker+`"}`))

	// Volume that no rule takes, to see that the broker and bridge keep nothing of it: 320 messages
	// of 128 KiB, 40 MiB in all.
	noise := bytes.Repeat([]byte("n"), 128<<10)
	for i := range noiseMessages {
		mqttPublish(t, attacker, "hostile/noise/"+fmt.Sprint(i%4), noise)
	}

	ddb := dynamodb.NewFromConfig(cfg)
	for _, thing := range []string{good1, good2} {
		eventually(t, thing+" ACTIVE", func() (bool, string) {
			item := getItem(t, ddb, "thingpipe-devices", "thingName", thing)
			return attrString(item, "state") == "ACTIVE", fmt.Sprint(item)
		})
	}
	eventually(t, "binding of "+good1+" to "+goodUser, func() (bool, string) {
		item := getItem(t, ddb, "thingpipe-bindings", "thingName", good1)
		return attrString(item, "userId") == goodUser, fmt.Sprint(item)
	})
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	eventually(t, "the good telemetry archived", func() (bool, string) {
		lines := archivedLines(t, s3c, "thingpipe-archive", good1)
		return len(lines) == 3, fmt.Sprintf("%d lines", len(lines))
	})

	// A bind request whose payload names another user than its topic: the topic's user (mallory) is
	// the one asking, and the device is bound to someone else.
	mallory := mqttConnect(t, mqttAddr, "app-mallory")
	mqttPublish(t, mallory, "app/mallory/bind", []byte(`{"requestId": "req-mallory", "thingName": "`+good1+`", "userId": "`+goodUser+`"}`))

	// Every case expected in a dead-letter queue is there, with its reason.
	dlqs := map[string][]sqstypes.Message{}
	for _, stage := range pipeline.AllStages() {
		var want []string
		for _, c := range hostileCases {
			if slices.Contains(c.dlq, stage) {
				want = append(want, c.reason)
			}
		}
		queue := "thingpipe-" + stage + "-dlq"
		var last []string
		eventually(t, fmt.Sprintf("%d messages in %s with their reasons", len(want), queue), func() (bool, string) {
			dlqs[stage] = append(dlqs[stage], drain(t, sq, queue)...)
			last = reasons(dlqs[stage])
			missing := unmatched(want, last)
			return len(missing) == 0, fmt.Sprintf("missing %q; have %q", missing, last)
		})
		// Nothing good (and nothing unexpected) was dead-lettered: every reason is one of the cases'.
		for _, r := range last {
			if !matchesAny(r, want) {
				t.Errorf("%s holds a message nobody expected there: %q", queue, r)
			}
		}
	}

	// Failed actions: the errorAction message in thingpipe-rule-errors, with the original payload.
	var errorMsgs []string
	for _, c := range hostileCases {
		if c.errorAction == "" {
			continue
		}
		want := base64.StdEncoding.EncodeToString(load(t, c))
		eventually(t, c.name+" in thingpipe-rule-errors", func() (bool, string) {
			for _, m := range drain(t, sq, "thingpipe-rule-errors") {
				errorMsgs = append(errorMsgs, aws.ToString(m.Body))
			}
			for _, body := range errorMsgs {
				if strings.Contains(body, want) && strings.Contains(body, c.errorAction) && strings.Contains(body, c.topic) {
					return true, ""
				}
			}
			return false, fmt.Sprintf("%.500q", errorMsgs)
		})
	}

	// binding.rejected for mallory, and the binding unchanged; one device.activated per device.
	activated := map[string]map[string]bool{}
	eventually(t, "binding.rejected already_bound for mallory", func() (bool, string) {
		var seen []string
		for _, body := range drainBodies(t, sq, eventsQueue) {
			var env struct {
				ID, Type, ThingName string
				Data                struct{ UserID, Reason string }
			}
			if err := json.Unmarshal([]byte(body), &env); err != nil {
				t.Fatalf("event %q: %v", body, err)
			}
			if env.Type == "device.activated" {
				if activated[env.ThingName] == nil {
					activated[env.ThingName] = map[string]bool{}
				}
				activated[env.ThingName][env.ID] = true
			}
			if env.Type == "binding.rejected" && env.Data.UserID == "mallory" && env.Data.Reason == "already_bound" {
				return true, ""
			}
			seen = append(seen, env.Type)
		}
		return false, fmt.Sprint(seen)
	})
	if item := getItem(t, ddb, "thingpipe-bindings", "thingName", good1); attrString(item, "userId") != goodUser {
		t.Errorf("binding of %s after mallory's request: %v, want user %s", good1, item, goodUser)
	}
	for _, thing := range []string{good1, good2} {
		if n := len(activated[thing]); n != 1 {
			t.Errorf("%d distinct device.activated events for %s (created twice, connected first), want 1", n, thing)
		}
	}
	// Of the hostile telemetry, archival takes only the NaN strings (strings to it) and the 128 KiB one.
	if lines := archivedLines(t, s3c, "thingpipe-archive", hostileThing); len(lines) != 2 {
		t.Errorf("%d hostile telemetry records archived, want 2 (NaN strings, 128 KiB): %.300q", len(lines), lines)
	}

	// The process is still up and every rule-evaluation failure was logged with its reason.
	select {
	case err := <-done:
		t.Fatalf("thingpipe local stopped during hostile input: %v", err)
	default:
	}
	logs := stderr.String()
	ruleErrors := 0
	for _, c := range hostileCases {
		if c.ruleError != "" {
			ruleErrors++
		}
	}
	if n := strings.Count(logs, "rule could not evaluate the message"); n != ruleErrors {
		t.Errorf("%d log lines say a rule could not evaluate a message, want %d", n, ruleErrors)
	}
	if !strings.Contains(logs, "payload exceeds") {
		t.Errorf("no log line reports the oversize publishes")
	}

	// Memory: after GC the heap in use grew by less than 24 MiB. The run passed 40 MiB of unrouted
	// noise plus ~1.5 MiB of hostile payloads through the broker and bridge, and the stages' pollers,
	// SDK clients and caches reached their steady state (a few MiB: runs grow by about 6 MiB). A
	// process that kept the payloads it has handled would grow by at least the 40 MiB of noise.
	heapAfter := heapInuse()
	t.Logf("heap in use: %d MiB before the messages, %d MiB after", heapBefore>>20, heapAfter>>20)
	if heapAfter > heapBefore+24<<20 {
		t.Errorf("heap in use grew from %d MiB to %d MiB, want less than 24 MiB growth", heapBefore>>20, heapAfter>>20)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("thingpipe local did not stop cleanly: %v\n%s", err, stderr.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("thingpipe local did not stop within 90s after cancel")
	}

	if want := fmt.Sprintf("not evaluated %d\n", ruleErrors); !strings.Contains(stdout.String(), want) {
		t.Errorf("summary does not say %q:\n%s", want, stdout.String())
	}

	// A security check: no credential and no payload in the logs at info level.
	t.Run("NoCredentialOrPayloadInLogs", func(t *testing.T) {
		all := stderr.String() + defaultLog.String()
		for _, marker := range []string{secretMarker, "AKIASECRETMARKERID01", payloadMarker} {
			if i := strings.Index(all, marker); i >= 0 {
				start := max(0, strings.LastIndexByte(all[:i], '\n'))
				t.Errorf("the logs contain %s: %.300s", marker, all[start:])
			}
		}
	})
	if t.Failed() {
		t.Logf("logs:\n%.20000s", logs)
	}
}

// deep is a JSON object holding n nested arrays (about 2n bytes).
func deep(n int) []byte {
	return []byte(`{"a":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}`)
}

func load(t *testing.T, c hostileCase) []byte {
	t.Helper()
	if c.file == "" {
		return c.payload
	}
	p, err := os.ReadFile(filepath.Join("../../testdata/bad", c.file))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// subscribeQueue creates an SQS queue subscribed (raw delivery) to an SNS topic and returns its URL.
func subscribeQueue(t *testing.T, cfg aws.Config, name, topicARN string) string {
	t.Helper()
	sq := sqs.NewFromConfig(cfg)
	q, err := sq.CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	arn := "arn:aws:sqs:" + moto.Region + ":" + moto.AccountID + ":" + name
	if _, err := sns.NewFromConfig(cfg).Subscribe(t.Context(), &sns.SubscribeInput{
		TopicArn: aws.String(topicARN), Protocol: aws.String("sqs"), Endpoint: aws.String(arn),
		Attributes: map[string]string{"RawMessageDelivery": "true"},
	}); err != nil {
		t.Fatal(err)
	}
	return aws.ToString(q.QueueUrl)
}

// drain receives every message now visible in queue, hiding them for the rest of the test.
func drain(t *testing.T, c *sqs.Client, queue string) []sqstypes.Message {
	t.Helper()
	url, err := c.GetQueueUrl(t.Context(), &sqs.GetQueueUrlInput{QueueName: aws.String(queue)})
	if err != nil {
		t.Fatalf("GetQueueUrl %s: %v", queue, err)
	}
	return drainURL(t, c, aws.ToString(url.QueueUrl))
}

func drainURL(t *testing.T, c *sqs.Client, url string) []sqstypes.Message {
	t.Helper()
	var all []sqstypes.Message
	for {
		out, err := c.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, VisibilityTimeout: 600,
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			t.Fatalf("ReceiveMessage %s: %v", url, err)
		}
		all = append(all, out.Messages...)
		if len(out.Messages) == 0 {
			return all
		}
	}
}

func drainBodies(t *testing.T, c *sqs.Client, url string) []string {
	var bodies []string
	for _, m := range drainURL(t, c, url) {
		bodies = append(bodies, aws.ToString(m.Body))
	}
	return bodies
}

// reasons are the dead-letter reasons of msgs, one per distinct message (redeliveries collapse).
func reasons(msgs []sqstypes.Message) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range msgs {
		r := aws.ToString(m.MessageAttributes[pipeline.MetadataDLQReason].StringValue)
		key := r + "\x00" + aws.ToString(m.Body)
		if !seen[key] {
			seen[key] = true
			out = append(out, r)
		}
	}
	return out
}

// unmatched returns the wanted substrings that no distinct reason accounts for (each reason counts once).
func unmatched(want, have []string) []string {
	used := make([]bool, len(have))
	var missing []string
	for _, w := range want {
		found := false
		for i, h := range have {
			if !used[i] && strings.Contains(h, w) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			missing = append(missing, w)
		}
	}
	return missing
}

func matchesAny(r string, want []string) bool {
	for _, w := range want {
		if strings.Contains(r, w) {
			return true
		}
	}
	return false
}
