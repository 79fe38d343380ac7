package archival

import (
	"context"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/thingpipe/thingpipe/events"
	"github.com/thingpipe/thingpipe/internal/apicalls"
	"github.com/thingpipe/thingpipe/internal/awstest"
	"github.com/thingpipe/thingpipe/workers/internal/awsfixture"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

func listAll(t *testing.T, c *s3.Client, bucket string) []string {
	t.Helper()
	out, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

func get(t *testing.T, c *s3.Client, bucket, key string) []byte {
	t.Helper()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestArchiveRetryAfterCrashRewritesTheSameObject(t *testing.T) {
	cfg := awstest.Config(t)
	client := awsfixture.S3Client(cfg)
	bucket := awstest.Name(t, "thingpipe-archive")
	awsfixture.Bucket(t, client, bucket)
	var msgs []*message.Message
	for i := range 5 {
		msgs = append(msgs, record(t, "shardId-000000000000", i, `{"temperature":21.5,"battery":87}`))
	}
	// Worker A writes the batch, then dies before its checkpoint moves.
	a, err := New(Config{Bucket: bucket, MaxRecords: 5, MaxAge: time.Hour}, NewS3Store(client, bucket))
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range handleAll(a, msgs) {
		if err != nil {
			t.Fatal(err)
		}
	}
	keys := listAll(t, client, bucket)
	want := "telemetry/dt=2026-11-23/hour=23/shardId-000000000000/49590338271490256608559692538361571095921575989136580000-49590338271490256608559692538361571095921575989136580004.ndjson.gz"
	if len(keys) != 1 || keys[0] != want {
		t.Fatalf("objects %v, want [%s]", keys, want)
	}
	first := get(t, client, bucket, keys[0])
	// Worker B gets the same records again (from the old checkpoint) and archives them.
	b, _ := New(Config{Bucket: bucket, MaxRecords: 5, MaxAge: time.Hour}, NewS3Store(client, bucket))
	for _, err := range handleAll(b, msgs) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if keys := listAll(t, client, bucket); len(keys) != 1 || keys[0] != want {
		t.Fatalf("after the retry: objects %v, want the same single object", keys)
	}
	again := get(t, client, bucket, want)
	if string(again) != string(first) {
		t.Error("the rewritten object differs")
	}
	ls := lines(t, again)
	if len(ls) != 5 {
		t.Fatalf("%d lines", len(ls))
	}
	for i, l := range ls {
		if l["thingName"] == nil || l["receivedAt"] == nil || !strings.HasSuffix(l["sequenceNumber"].(string), "000"+string(rune('0'+i))) || l["temperature"] != 21.5 {
			t.Errorf("line %d: %v", i, l)
		}
	}
	for _, x := range []*Archiver{a, b} {
		if err := x.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestS3FailureIsRetryable(t *testing.T) {
	cfg := awstest.Config(t)
	client := awsfixture.S3Client(cfg)
	a, _ := New(Config{MaxRecords: 2, MaxAge: time.Hour}, NewS3Store(client, awstest.Name(t, "no-such-bucket")))
	defer a.Close(context.Background())
	errs := handleAll(a, []*message.Message{record(t, "shardId-0", 1, `{}`), record(t, "shardId-0", 2, `{}`)})
	for _, err := range errs {
		if err == nil || events.IsPermanent(err) || !strings.Contains(err.Error(), "NoSuchBucket") {
			t.Errorf("want a retryable NoSuchBucket error, got %v", err)
		}
	}
}

// TestRetryCutByAgeNeverDuplicates: worker A writes a batch cut by age, then dies before its
// checkpoint moves; worker B gets the records again with different timing (and more of them) and
// cuts by count. Every record must end up in exactly one object, A's object untouched.
func TestRetryCutByAgeNeverDuplicates(t *testing.T) {
	cfg := awstest.Config(t)
	calls := apicalls.New()
	calls.Instrument(&cfg)
	client := awsfixture.S3Client(cfg)
	bucket := awstest.Name(t, "thingpipe-archive")
	awsfixture.Bucket(t, client, bucket)
	const shard = "shardId-000000000007"
	var msgs []*message.Message
	for i := range 12 {
		msgs = append(msgs, record(t, shard, 10+i, `{"temperature":21.5}`))
	}
	a, err := New(Config{Bucket: bucket, MaxRecords: 500, MaxAge: 50 * time.Millisecond}, NewS3Store(client, bucket))
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range handleAll(a, msgs[:5]) { // the age timer cuts these five
		if err != nil {
			t.Fatal(err)
		}
	}
	keysA := listAll(t, client, bucket)
	if len(keysA) != 1 {
		t.Fatalf("worker A wrote %v, want one object", keysA)
	}
	bodyA := get(t, client, bucket, keysA[0])
	// "Crash": A is abandoned. B reads from the old checkpoint: the same five and seven more, cut by
	// count at 4, so its batches would start at the same record but end elsewhere.
	b, err := New(Config{Bucket: bucket, MaxRecords: 4, MaxAge: 100 * time.Millisecond}, NewS3Store(client, bucket))
	if err != nil {
		t.Fatal(err)
	}
	before := calls.Get("S3", "ListObjectsV2")
	for i, err := range handleAll(b, msgs) {
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	// Once more (a second crash of B before any checkpoint): everything is acked, nothing is written.
	puts := calls.Get("S3", "PutObject")
	for i, err := range handleAll(b, msgs) {
		if err != nil {
			t.Fatalf("second redelivery, record %d: %v", i, err)
		}
	}
	if got := calls.Get("S3", "PutObject"); got != puts {
		t.Errorf("the second redelivery wrote %d objects, want none", got-puts)
	}
	keys := listAll(t, client, bucket)
	seen := map[string]string{}
	for _, k := range keys {
		for _, l := range lines(t, get(t, client, bucket, k)) {
			seq := l["sequenceNumber"].(string)
			if prev, dup := seen[seq]; dup {
				t.Errorf("record %s is in %s and %s", seq, prev, k)
			}
			seen[seq] = k
		}
	}
	if len(seen) != len(msgs) {
		t.Errorf("%d records archived, want %d (objects %v)", len(seen), len(msgs), keys)
	}
	if !slices.Contains(keys, keysA[0]) || string(get(t, client, bucket, keysA[0])) != string(bodyA) {
		t.Errorf("worker A's object %s changed or vanished: %v", keysA[0], keys)
	}
	lists := calls.Get("S3", "ListObjectsV2") - before
	t.Logf("objects %d, ListObjectsV2 calls by B %d, GetObject %d", len(keys), lists, calls.Get("S3", "GetObject"))
	if lists < 1 || lists > int64(len(msgs)) {
		t.Errorf("%d List calls for %d records: want one per batch", lists, len(msgs))
	}
	for _, x := range []*Archiver{a, b} {
		if err := x.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
