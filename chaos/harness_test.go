// Package chaos runs `thingpipe run` as a subprocess under load and breaks things around it, then
// checks that nothing is lost or duplicated: every telemetry record archived exactly once, every device
// ACTIVE, every binding done, one FIRING email per incident. The long tests (SIGKILL at random
// moments, shard takeover) carry the build tag chaos and run under `make chaos`; the others run in
// `make test`.
package chaos

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kintypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/thingpipe/thingpipe/deploy"
	"github.com/thingpipe/thingpipe/internal/awstest"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

// env is one deployed stack in the package's moto, shared by the tests (resource names are fixed by
// the template); each test uses devices, consumer groups, a bucket and an inbox of its own.
type env struct {
	cfg  aws.Config
	out  deploy.Outputs
	bin  string
	kin  *kinesis.Client
	sqs  *sqs.Client
	ddb  *dynamodb.Client
	s3   *s3.Client
	logs string // directory for the processes' output
}

var (
	setupOnce sync.Once
	setupEnv  *env
	setupErr  error
)

func setup(t *testing.T) *env {
	t.Helper()
	setupOnce.Do(func() {
		cfg := awstest.Config(t)
		dir, err := os.MkdirTemp("", "thingpipe-chaos-")
		if err != nil {
			setupErr = err
			return
		}
		// CHAOS_BIN tests a binary built elsewhere (another commit, a release); default: this tree's.
		bin := os.Getenv("CHAOS_BIN")
		if bin == "" {
			bin = filepath.Join(dir, "thingpipe")
			build := exec.Command("go", "build", "-o", bin, "./cmd/thingpipe")
			build.Dir = ".."
			if out, err := build.CombinedOutput(); err != nil {
				setupErr = fmt.Errorf("building thingpipe: %v\n%s", err, out)
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := deploy.Deploy(ctx, cfg, deploy.Options{PollInterval: 500 * time.Millisecond, Parameters: map[string]string{"TelemetryShardCount": "4"}})
		if err != nil {
			setupErr = fmt.Errorf("deploying the stack: %w", err)
			return
		}
		setupEnv = &env{
			cfg: cfg, out: out, bin: bin, logs: dir,
			kin: kinesis.NewFromConfig(cfg), sqs: sqs.NewFromConfig(cfg), ddb: dynamodb.NewFromConfig(cfg),
			s3: s3.NewFromConfig(cfg, func(o *s3.Options) {
				o.UsePathStyle = true
				o.DisableLogOutputChecksumValidationSkipped = true // moto sends no checksums: not worth a log line per object
			}),
		}
	})
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	return setupEnv
}

// scenario is one test's names.
type scenario struct {
	e       *env
	name    string
	devices []string
	bucket  string
	inbox   string // SQS queue URL subscribed to the alerts topic
	envv    []string

	// URLs sendControl sends to: the stack's queues unless the test gives the scenario its own.
	provisioningQueue, bindingQueue string

	kills      []time.Time         // when each SIGKILL was sent
	firingAt   map[string][]string // SNS timestamps of each thing's FIRING emails
	resolvedAt map[string][]string // and of its RESOLVED emails
}

func newScenario(t *testing.T, e *env, devices int) *scenario {
	t.Helper()
	ctx := t.Context()
	s := &scenario{e: e, name: awstest.Name(t, "chaos"), firingAt: map[string][]string{}, resolvedAt: map[string][]string{},
		provisioningQueue: e.out.ProvisioningQueueURL, bindingQueue: e.out.BindingQueueURL}
	for i := range devices {
		s.devices = append(s.devices, fmt.Sprintf("%s-dev-%d", s.name, i))
	}
	s.bucket = s.name + "-archive"
	if _, err := e.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.bucket)}); err != nil {
		t.Fatal(err)
	}
	q, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(s.name + "-inbox")})
	if err != nil {
		t.Fatal(err)
	}
	s.inbox = aws.ToString(q.QueueUrl)
	attrs, err := e.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sns.NewFromConfig(e.cfg).Subscribe(ctx, &sns.SubscribeInput{
		TopicArn: aws.String(e.out.AlertsTopicARN), Protocol: aws.String("sqs"),
		Endpoint: aws.String(attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]),
	}); err != nil {
		t.Fatal(err)
	}
	// Short intervals so kills, failover and batches happen within seconds.
	s.envv = append(os.Environ(),
		"THINGPIPE_HTTP_ADDR=127.0.0.1:0",
		"THINGPIPE_LOG__LEVEL="+cmpOr(os.Getenv("THINGPIPE_LOG__LEVEL"), "info"), // debug for post-mortems
		"THINGPIPE_LOG__FORMAT=text",
		"THINGPIPE_RESOURCES__ARCHIVE_BUCKET="+s.bucket,
		"THINGPIPE_RESOURCES__ALERTS_TOPIC="+e.out.AlertsTopicARN,
		"THINGPIPE_RESOURCES__EVENTS_TOPIC="+e.out.EventsTopicARN,
		"THINGPIPE_KINESIS__ALERTING_GROUP="+s.name+"-alerting",
		"THINGPIPE_KINESIS__ARCHIVAL_GROUP="+s.name+"-archival",
		"THINGPIPE_KINESIS__START_POSITION=TRIM_HORIZON",
		"THINGPIPE_KINESIS__FAILOVER_TIME=3s",
		"THINGPIPE_KINESIS__CHECKPOINT_INTERVAL=2s",
		"THINGPIPE_ARCHIVAL__MAX_AGE=1s",
		"THINGPIPE_ARCHIVAL__MAX_RECORDS=50",
		"THINGPIPE_SQS__WAIT_TIME=1s",
		"THINGPIPE_SQS__VISIBILITY_TIMEOUT=4s",
		"THINGPIPE_SHUTDOWN_TIMEOUT=10s",
	)
	return s
}

// retries counts the archive batches the processes found already (partly) in S3: evidence that the
// kills hit the window between an object's write and its checkpoint.
func (s *scenario) retries(t *testing.T) int {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(s.e.logs, s.name+"-run-*.log"))
	n := 0
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		n += bytes.Count(b, []byte("archive retry"))
	}
	return n
}

func cmpOr(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

// proc is one `thingpipe run` subprocess.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func (s *scenario) start(t *testing.T, args ...string) *proc {
	t.Helper()
	f, err := os.CreateTemp(s.e.logs, s.name+"-run-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(s.e.bin, append([]string{"run"}, args...)...)
	cmd.Env = s.envv
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: f.Name()}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() { p.stop(syscall.SIGKILL) })
	return p
}

func (p *proc) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// sent is a telemetry record put on the stream.
type sent struct {
	thing string
	ts    int64
}

// load puts rounds of telemetry (one record per device per round, every interval) on the stream.
// Readings 10-14 of each device are hot (one incident), the others normal. It returns the records
// by "<shardId>/<sequenceNumber>" (sequence numbers are unique within a shard only).
func (s *scenario) load(ctx context.Context, t *testing.T, rounds int, interval time.Duration) map[string]sent {
	t.Helper()
	recs := map[string]sent{}
	base := time.Now().UnixMilli()
	for r := range rounds {
		var entries []kintypes.PutRecordsRequestEntry
		var meta []sent
		for _, d := range s.devices {
			temp := 21.5
			if r >= 10 && r < 15 {
				temp = 92.0 + float64(r-10)
			}
			ts := base + int64(r)
			body := fmt.Sprintf(`{"temperature":%v,"battery":%d,"ts":%d,"thingName":%q}`, temp, 90-r%10, ts, d)
			entries = append(entries, kintypes.PutRecordsRequestEntry{Data: []byte(body), PartitionKey: aws.String(d)})
			meta = append(meta, sent{thing: d, ts: ts})
		}
		for len(entries) > 0 {
			out, err := s.e.kin.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(s.e.out.TelemetryStreamName), Records: entries})
			if err != nil {
				t.Fatalf("PutRecords: %v", err)
			}
			var retryE []kintypes.PutRecordsRequestEntry
			var retryM []sent
			for i, res := range out.Records {
				if res.SequenceNumber == nil {
					retryE, retryM = append(retryE, entries[i]), append(retryM, meta[i])
					continue
				}
				recs[aws.ToString(res.ShardId)+"/"+aws.ToString(res.SequenceNumber)] = meta[i]
			}
			entries, meta = retryE, retryM
		}
		select {
		case <-ctx.Done():
			return recs
		case <-time.After(interval):
		}
	}
	return recs
}

// sendControl sends each device's registry and presence events and a bind request, the bodies the
// default rules put on the queues.
func (s *scenario) sendControl(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	now := time.Now().UnixMilli()
	for i, d := range s.devices {
		created, connected, bind := controlBodies(i, d, now)
		for _, m := range []struct{ url, body string }{
			{s.provisioningQueue, created}, {s.provisioningQueue, connected}, {s.bindingQueue, bind},
		} {
			if _, err := s.e.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(m.url), MessageBody: aws.String(m.body)}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// controlBodies are device i's registry event, presence event and bind request (user-<i>), as the
// default rules put them on the queues.
func controlBodies(i int, d string, now int64) (created, connected, bind string) {
	created = fmt.Sprintf(`{"eventType":"THING_EVENT","eventId":"%s-created","timestamp":%d,"operation":"CREATED","accountId":"%s","thingId":"id-%s","thingName":%q,"versionNumber":1,"attributes":{}}`, d, now, awstest.AccountID, d, d)
	connected = fmt.Sprintf(`{"clientId":%q,"timestamp":%d,"eventType":"connected","sessionIdentifier":"s-%s","principalIdentifier":"p","ipAddress":"192.0.2.1","versionNumber":0}`, d, now+1, d)
	bind = fmt.Sprintf(`{"requestId":"req-%s","thingName":%q,"userId":"user-%d"}`, d, d, i)
	return created, connected, bind
}

// archived reads every object of the scenario's bucket: how many times each record
// ("<shardId>/<sequenceNumber>", the shard from the key) is archived, and its line's thingName and ts.
func (s *scenario) archived(t *testing.T) (map[string]int, map[string]sent, int) {
	t.Helper()
	ctx := t.Context()
	count, lines := map[string]int{}, map[string]sent{}
	objects := 0
	p := s3.NewListObjectsV2Paginator(s.e.s3, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListObjectsV2: %v", err)
		}
		for _, o := range page.Contents {
			objects++
			parts := strings.Split(aws.ToString(o.Key), "/")
			if len(parts) != 5 {
				t.Fatalf("archive key %s does not follow telemetry/dt=…/hour=…/<shard>/<first>-<last>.ndjson.gz", aws.ToString(o.Key))
			}
			shard := parts[3]
			got, err := s.e.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: o.Key})
			if err != nil {
				t.Fatalf("GetObject: %v", err)
			}
			raw, err := io.ReadAll(got.Body)
			got.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			zr, err := gzip.NewReader(bytes.NewReader(raw))
			if err != nil {
				t.Fatalf("%s: %v", aws.ToString(o.Key), err)
			}
			dec := json.NewDecoder(zr)
			for {
				var l struct {
					ThingName      string `json:"thingName"`
					SequenceNumber string `json:"sequenceNumber"`
					TS             int64  `json:"ts"`
				}
				if err := dec.Decode(&l); err == io.EOF {
					break
				} else if err != nil {
					t.Fatalf("%s: %v", aws.ToString(o.Key), err)
				}
				id := shard + "/" + l.SequenceNumber
				count[id]++
				lines[id] = sent{thing: l.ThingName, ts: l.TS}
			}
		}
	}
	return count, lines, objects
}

// firing counts the FIRING and RESOLVED emails per device in the inbox (it drains the queue into
// the counts, so call it with the same maps until the end).
func (s *scenario) drainInbox(t *testing.T, firing, resolved map[string]int) {
	t.Helper()
	for {
		out, err := s.e.sqs.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(s.inbox), MaxNumberOfMessages: 10, WaitTimeSeconds: 0})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			return
		}
		for _, m := range out.Messages {
			var n struct {
				Subject           string
				Timestamp         string
				MessageAttributes map[string]struct{ Value string }
			}
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &n); err != nil {
				t.Fatalf("inbox message: %v", err)
			}
			thing, status := n.MessageAttributes["thingName"].Value, n.MessageAttributes["status"].Value
			switch {
			case !slices.Contains(s.devices, thing):
				// Every scenario's inbox gets the alerts topic; consumer groups read the stream from
				// the start, so a notice an earlier test left owed can go out now. Not this test's.
				t.Logf("inbox: %s email for %s, not a device of this test (sent %s)", status, thing, n.Timestamp)
			case status == "FIRING":
				firing[thing]++
				s.firingAt[thing] = append(s.firingAt[thing], n.Timestamp)
			case status == "RESOLVED":
				resolved[thing]++
				s.resolvedAt[thing] = append(s.resolvedAt[thing], n.Timestamp)
			default:
				t.Errorf("email without a FIRING/RESOLVED status: %s", aws.ToString(m.Body))
			}
			if _, err := s.e.sqs.DeleteMessage(t.Context(), &sqs.DeleteMessageInput{QueueUrl: aws.String(s.inbox), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func (s *scenario) item(t *testing.T, table, thing string) map[string]ddbtypes.AttributeValue {
	t.Helper()
	out, err := s.e.ddb.GetItem(t.Context(), &dynamodb.GetItemInput{
		TableName: aws.String(table), ConsistentRead: aws.Bool(true),
		Key: map[string]ddbtypes.AttributeValue{"thingName": &ddbtypes.AttributeValueMemberS{Value: thing}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Item
}

func str(item map[string]ddbtypes.AttributeValue, k string) string {
	if v, ok := item[k].(*ddbtypes.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

// waitFor polls cond every second until it holds or the limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	waitForEvery(t, limit, time.Second, what, cond)
}

// waitForEvery polls cond every interval until it holds or the limit passes.
func waitForEvery(t *testing.T, limit, interval time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
		time.Sleep(interval)
	}
	t.Fatalf("%s: not within %s; last seen: %s", what, limit, last)
}

// settled reports whether every outcome of the load is in place: recs archived, every device ACTIVE
// and bound to its user, a FIRING and a RESOLVED email for every device (drained from the inbox into
// firing and resolved); summary says what is still missing.
func (s *scenario) settled(t *testing.T, recs map[string]sent, firing, resolved map[string]int) (ok bool, summary string) {
	t.Helper()
	archived, archive := s.checkArchive(t, recs)
	notActive, notBound := 0, 0
	for i, d := range s.devices {
		if str(s.item(t, s.e.out.DevicesTable, d), "state") != "ACTIVE" {
			notActive++
		}
		if str(s.item(t, s.e.out.BindingsTable, d), "userId") != fmt.Sprintf("user-%d", i) {
			notBound++
		}
	}
	s.drainInbox(t, firing, resolved)
	n := len(s.devices)
	return archived && notActive == 0 && notBound == 0 && len(firing) == n && len(resolved) == n,
		fmt.Sprintf("archive: %s; %d devices not ACTIVE, %d not bound; FIRING emails for %d devices, RESOLVED for %d", archive, notActive, notBound, len(firing), len(resolved))
}

// checkArchive asserts every sent record is archived exactly once, with its thing and ts.
func (s *scenario) checkArchive(t *testing.T, recs map[string]sent) (complete bool, summary string) {
	count, lines, objects := s.archived(t)
	missing, dups, wrong := 0, 0, 0
	for seq, want := range recs {
		switch n := count[seq]; {
		case n == 0:
			missing++
		case n > 1:
			dups++
		}
		if got, ok := lines[seq]; ok && got != want {
			wrong++
		}
	}
	extra := 0
	for seq := range count {
		if _, ok := recs[seq]; !ok && strings.HasPrefix(lines[seq].thing, s.name) {
			extra++
		}
	}
	return missing == 0, fmt.Sprintf("%d records sent, %d objects, %d missing, %d archived more than once, %d with wrong content, %d unknown", len(recs), objects, missing, dups, wrong, extra)
}
