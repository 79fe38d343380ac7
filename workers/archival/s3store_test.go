package archival

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/thingpipe/thingpipe/events"
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
