package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-cmp/cmp"

	"github.com/thingpipe/thingpipe/internal/apicalls"
	"github.com/thingpipe/thingpipe/internal/awstest"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

// syncBuffer collects slog output; the SDK may log from other goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The template names its resources (DESIGN.md's contracts), so one moto holds one thingpipe
// stack: this is the only test in the package that deploys the real template.
func TestDeployCreatesEveryResourceAndIsIdempotent(t *testing.T) {
	ctx := context.Background()
	cfg := awstest.Config(t)
	calls := apicalls.New()
	calls.Instrument(&cfg)
	var logs syncBuffer
	opts := Options{
		StackName:    awstest.Name(t, "thingpipe"),
		PollInterval: 20 * time.Millisecond,
		Timeout:      2 * time.Minute,
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
	}

	first, err := Deploy(ctx, cfg, opts)
	if err != nil {
		t.Fatalf("first Deploy: %v", err)
	}
	if got := calls.Get("CloudFormation", "CreateStack"); got != 1 {
		t.Errorf("CreateStack calls = %d, want 1", got)
	}
	if !strings.Contains(logs.String(), "creating stack") || !strings.Contains(logs.String(), "CREATE_COMPLETE") {
		t.Errorf("progress was not logged; logs:\n%s", logs.String())
	}
	checkResources(t, ctx, cfg, first, 60)

	t.Run("ReadOutputs", func(t *testing.T) {
		read, err := ReadOutputs(ctx, cfg, opts.StackName)
		if err != nil {
			t.Fatalf("ReadOutputs: %v", err)
		}
		if diff := cmp.Diff(first, read); diff != "" {
			t.Errorf("ReadOutputs differs from Deploy's outputs (-deploy +read):\n%s", diff)
		}
		var se *StackError
		if _, err := ReadOutputs(ctx, cfg, awstest.Name(t, "missing")); !errors.As(err, &se) || se.Status != "MISSING" {
			t.Errorf("ReadOutputs of a missing stack: %v, want a StackError MISSING", err)
		}
	})

	t.Run("second Deploy is a no-op", func(t *testing.T) {
		calls.Reset()
		second, err := Deploy(ctx, cfg, opts)
		if err != nil {
			t.Fatalf("second Deploy: %v", err)
		}
		if diff := cmp.Diff(first, second); diff != "" {
			t.Errorf("outputs changed (-first +second):\n%s", diff)
		}
		for _, op := range []string{"CreateStack", "UpdateStack"} {
			if n := calls.Get("CloudFormation", op); n != 0 {
				t.Errorf("%s called %d times on an up-to-date stack", op, n)
			}
		}
		if n := calls.Service("CloudFormation"); n != 2 {
			t.Errorf("CloudFormation calls = %d (%v), want 2 (DescribeStacks, GetTemplate)", n, calls.Snapshot())
		}
	})

	t.Run("changed parameter updates the stack, then is a no-op again", func(t *testing.T) {
		changed := opts
		changed.Parameters = map[string]string{"WorkQueueVisibilitySeconds": "90"}
		calls.Reset()
		updated, err := Deploy(ctx, cfg, changed)
		if err != nil {
			t.Fatalf("Deploy with a changed parameter: %v", err)
		}
		if n := calls.Get("CloudFormation", "UpdateStack"); n != 1 {
			t.Errorf("UpdateStack calls = %d, want 1", n)
		}
		if updated.ProvisioningQueueURL != first.ProvisioningQueueURL {
			t.Errorf("queue URL changed by an in-place update: %s -> %s", first.ProvisioningQueueURL, updated.ProvisioningQueueURL)
		}
		checkResources(t, ctx, cfg, updated, 90)

		calls.Reset()
		if _, err := Deploy(ctx, cfg, changed); err != nil {
			t.Fatalf("repeated Deploy: %v", err)
		}
		if n := calls.Get("CloudFormation", "UpdateStack"); n != 0 {
			t.Errorf("UpdateStack called %d times with unchanged parameters", n)
		}
	})
}

// checkResources verifies, through each service's own API, that the stack's resources exist with
// the settings the template gives them — where moto reflects them (see docs/deploy.md for the
// settings moto's CloudFormation ignores).
func checkResources(t *testing.T, ctx context.Context, cfg aws.Config, out Outputs, visibility int) {
	t.Helper()
	t.Run("sqs", func(t *testing.T) {
		client := sqs.NewFromConfig(cfg)
		queues := []struct {
			name, url, arn, dlqARN string
			retention              string
		}{
			{ProvisioningQueue, out.ProvisioningQueueURL, out.ProvisioningQueueARN, out.ProvisioningDLQARN, "345600"},
			{BindingQueue, out.BindingQueueURL, out.BindingQueueARN, out.BindingDLQARN, "345600"},
			{RuleErrorsQueue, out.RuleErrorsQueueURL, out.RuleErrorsQueueARN, "", "1209600"},
			{ProvisioningDLQ, out.ProvisioningDLQURL, out.ProvisioningDLQARN, "", "1209600"},
			{BindingDLQ, out.BindingDLQURL, out.BindingDLQARN, "", "1209600"},
			{AlertingDLQ, out.AlertingDLQURL, out.AlertingDLQARN, "", "1209600"},
			{ArchivalDLQ, out.ArchivalDLQURL, out.ArchivalDLQARN, "", "1209600"},
		}
		for _, q := range queues {
			u, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(q.name)})
			if err != nil {
				t.Errorf("queue %s: %v", q.name, err)
				continue
			}
			if !strings.HasSuffix(q.url, "/"+q.name) {
				t.Errorf("output URL of %s = %q", q.name, q.url)
			}
			attrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
				QueueUrl: u.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
			})
			if err != nil {
				t.Fatalf("attributes of %s: %v", q.name, err)
			}
			a := attrs.Attributes
			if a["QueueArn"] != q.arn {
				t.Errorf("%s: QueueArn = %q, output says %q", q.name, a["QueueArn"], q.arn)
			}
			if a["SqsManagedSseEnabled"] != "true" {
				t.Errorf("%s: SqsManagedSseEnabled = %q, want true", q.name, a["SqsManagedSseEnabled"])
			}
			if a["MessageRetentionPeriod"] != q.retention {
				t.Errorf("%s: MessageRetentionPeriod = %q, want %s", q.name, a["MessageRetentionPeriod"], q.retention)
			}
			if q.dlqARN == "" {
				if a["RedrivePolicy"] != "" {
					t.Errorf("%s: unexpected RedrivePolicy %s", q.name, a["RedrivePolicy"])
				}
				continue
			}
			if got, want := a["VisibilityTimeout"], strconv.Itoa(visibility); got != want {
				t.Errorf("%s: VisibilityTimeout = %q, want %s", q.name, got, want)
			}
			var rp struct {
				DeadLetterTargetArn string `json:"deadLetterTargetArn"`
				MaxReceiveCount     int    `json:"maxReceiveCount"`
			}
			if err := json.Unmarshal([]byte(a["RedrivePolicy"]), &rp); err != nil {
				t.Fatalf("%s: RedrivePolicy %q: %v", q.name, a["RedrivePolicy"], err)
			}
			if rp.DeadLetterTargetArn != q.dlqARN || rp.MaxReceiveCount != 20 {
				t.Errorf("%s: RedrivePolicy = %+v, want DLQ %s after 20 receives", q.name, rp, q.dlqARN)
			}
		}
		// The output URLs are AWS-style (https://sqs.<region>.amazonaws.com/...); the SDK sends the
		// request to the configured endpoint, so the same outputs work against moto.
		body := "deploy-test"
		if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(out.ProvisioningQueueURL), MessageBody: aws.String(body)}); err != nil {
			t.Fatalf("SendMessage to the output URL: %v", err)
		}
		got, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(out.ProvisioningQueueURL), WaitTimeSeconds: 1})
		if err != nil || len(got.Messages) != 1 || aws.ToString(got.Messages[0].Body) != body {
			t.Fatalf("ReceiveMessage from the output URL = %+v, %v", got, err)
		}
		if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(out.ProvisioningQueueURL), ReceiptHandle: got.Messages[0].ReceiptHandle}); err != nil {
			t.Fatalf("DeleteMessage: %v", err)
		}
	})

	t.Run("kinesis", func(t *testing.T) {
		client := kinesis.NewFromConfig(cfg)
		sum, err := client.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(TelemetryStream)})
		if err != nil {
			t.Fatalf("stream %s: %v", TelemetryStream, err)
		}
		d := sum.StreamDescriptionSummary
		if aws.ToString(d.StreamARN) != out.TelemetryStreamARN || out.TelemetryStreamName != TelemetryStream {
			t.Errorf("stream ARN %s / outputs %s %s", aws.ToString(d.StreamARN), out.TelemetryStreamName, out.TelemetryStreamARN)
		}
		if aws.ToInt32(d.OpenShardCount) != DefaultTelemetryShards {
			t.Errorf("open shards = %d, want %d", aws.ToInt32(d.OpenShardCount), DefaultTelemetryShards)
		}
		if aws.ToInt32(d.RetentionPeriodHours) != 24 {
			t.Errorf("retention = %d h, want 24", aws.ToInt32(d.RetentionPeriodHours))
		}
	})

	t.Run("dynamodb", func(t *testing.T) {
		client := dynamodb.NewFromConfig(cfg)
		tables := []struct{ name, output, key string }{
			{DevicesTable, out.DevicesTable, DevicesKey},
			{BindingsTable, out.BindingsTable, BindingsKey},
			{AlertsTable, out.AlertsTable, AlertsKey},
			{LeasesTable, out.LeasesTable, LeasesKey},
		}
		for _, tb := range tables {
			if tb.output != tb.name {
				t.Errorf("output table name %q, want %q", tb.output, tb.name)
			}
			d, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(tb.name)})
			if err != nil {
				t.Errorf("table %s: %v", tb.name, err)
				continue
			}
			tab := d.Table
			if len(tab.KeySchema) != 1 || aws.ToString(tab.KeySchema[0].AttributeName) != tb.key || tab.KeySchema[0].KeyType != ddbtypes.KeyTypeHash {
				t.Errorf("%s: key schema %+v, want HASH %s", tb.name, tab.KeySchema, tb.key)
			}
			if tab.BillingModeSummary == nil || tab.BillingModeSummary.BillingMode != ddbtypes.BillingModePayPerRequest {
				t.Errorf("%s: billing mode %+v, want PAY_PER_REQUEST", tb.name, tab.BillingModeSummary)
			}
			var gsis []string
			for _, g := range tab.GlobalSecondaryIndexes {
				desc := aws.ToString(g.IndexName) + ":"
				for _, k := range g.KeySchema {
					desc += aws.ToString(k.AttributeName) + "/" + string(k.KeyType)
				}
				gsis = append(gsis, desc+":"+string(g.Projection.ProjectionType))
			}
			var wantGSI []string
			if tb.name == BindingsTable {
				wantGSI = []string{BindingsByUserIndex + ":" + BindingsUserKey + "/HASH:ALL"}
			}
			if diff := cmp.Diff(wantGSI, gsis); diff != "" {
				t.Errorf("%s: global secondary indexes (-want +got):\n%s", tb.name, diff)
			}
		}
	})

	t.Run("sns", func(t *testing.T) {
		client := sns.NewFromConfig(cfg)
		for name, arn := range map[string]string{AlertsTopic: out.AlertsTopicARN, EventsTopic: out.EventsTopicARN} {
			if !strings.HasSuffix(arn, ":"+name) {
				t.Errorf("topic output %q does not name %s", arn, name)
			}
			a, err := client.GetTopicAttributes(ctx, &sns.GetTopicAttributesInput{TopicArn: aws.String(arn)})
			if err != nil {
				t.Errorf("topic %s: %v", name, err)
				continue
			}
			if a.Attributes["KmsMasterKeyId"] != "alias/aws/sns" {
				t.Errorf("topic %s: KmsMasterKeyId = %q, want alias/aws/sns", name, a.Attributes["KmsMasterKeyId"])
			}
		}
	})

	t.Run("s3", func(t *testing.T) {
		client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
		if out.ArchiveBucket != DefaultArchiveBucket {
			t.Errorf("bucket output %q, want %q", out.ArchiveBucket, DefaultArchiveBucket)
		}
		if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(out.ArchiveBucket)}); err != nil {
			t.Fatalf("bucket %s: %v", out.ArchiveBucket, err)
		}
		enc, err := client.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String(out.ArchiveBucket)})
		if err != nil {
			t.Fatalf("bucket encryption: %v", err)
		}
		rules := enc.ServerSideEncryptionConfiguration.Rules
		if len(rules) != 1 || rules[0].ApplyServerSideEncryptionByDefault == nil || rules[0].ApplyServerSideEncryptionByDefault.SSEAlgorithm != "AES256" {
			t.Errorf("bucket encryption rules %+v, want AES256", rules)
		}
	})

	t.Run("iam", func(t *testing.T) {
		client := iam.NewFromConfig(cfg)
		for name, want := range map[string]struct{ arn, principal string }{
			IotRulesRole: {out.IotRulesRoleARN, "iot.amazonaws.com"},
			WorkersRole:  {out.WorkersRoleARN, "ecs-tasks.amazonaws.com"},
		} {
			r, err := client.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
			if err != nil {
				t.Errorf("role %s: %v", name, err)
				continue
			}
			if aws.ToString(r.Role.Arn) != want.arn {
				t.Errorf("role %s: ARN %s, output %s", name, aws.ToString(r.Role.Arn), want.arn)
			}
			doc, _ := url.QueryUnescape(aws.ToString(r.Role.AssumeRolePolicyDocument))
			if !strings.Contains(doc, want.principal) {
				t.Errorf("role %s: trust policy %s does not name %s", name, doc, want.principal)
			}
			pols, err := client.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(name)})
			if err != nil || len(pols.PolicyNames) != 1 {
				t.Errorf("role %s: inline policies %+v, %v; want exactly one", name, pols, err)
			}
		}
	})

	t.Run("iot", func(t *testing.T) {
		client := iot.NewFromConfig(cfg)
		// ListPolicies rather than GetPolicy: moto returns the policy document as a JSON object
		// where the API has a string, which the SDK rightly refuses to decode.
		pols, err := client.ListPolicies(ctx, &iot.ListPoliciesInput{})
		if err != nil {
			t.Fatalf("ListPolicies: %v", err)
		}
		got := map[string]string{}
		for _, p := range pols.Policies {
			got[aws.ToString(p.PolicyName)] = aws.ToString(p.PolicyArn)
		}
		for name, arn := range map[string]string{DevicePolicy: out.DevicePolicyARN, AppPolicy: out.AppPolicyARN} {
			if got[name] != arn {
				t.Errorf("IoT policy %s: ARN %q, output %q", name, got[name], arn)
			}
		}
	})
}

func TestDeployRejectsBadOptionsBeforeCallingAWS(t *testing.T) {
	cfg := awstest.Config(t)
	calls := apicalls.New()
	calls.Instrument(&cfg)
	tests := []struct {
		name      string
		opts      Options
		wantField string // OptionsError.Field or ParameterError.Name
	}{
		{"bad stack name", Options{StackName: "1-thingpipe"}, "StackName"},
		{"negative poll interval", Options{PollInterval: -time.Second}, "PollInterval"},
		{"unknown parameter", Options{Parameters: map[string]string{"ShardCount": "4"}}, "ShardCount"},
		{"shards not a number", Options{Parameters: map[string]string{"TelemetryShardCount": "two"}}, "TelemetryShardCount"},
		{"shards below minimum", Options{Parameters: map[string]string{"TelemetryShardCount": "0"}}, "TelemetryShardCount"},
		{"bucket name pattern", Options{Parameters: map[string]string{"ArchiveBucketName": "Thingpipe_Archive"}}, "ArchiveBucketName"},
		{"emails with a space", Options{Parameters: map[string]string{"AlertEmails": "a@example.com, b@example.com"}}, "AlertEmails"},
		{"principal not allowed", Options{Parameters: map[string]string{"WorkerPrincipalService": "lambda.amazonaws.com"}}, "WorkerPrincipalService"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Deploy(context.Background(), cfg, tt.opts)
			var oe *OptionsError
			var pe *ParameterError
			switch {
			case errors.As(err, &oe):
				if oe.Field != tt.wantField {
					t.Errorf("OptionsError names %q, want %q (%v)", oe.Field, tt.wantField, err)
				}
			case errors.As(err, &pe):
				if pe.Name != tt.wantField {
					t.Errorf("ParameterError names %q, want %q (%v)", pe.Name, tt.wantField, err)
				}
			default:
				t.Fatalf("Deploy error = %v, want an OptionsError or ParameterError naming %s", err, tt.wantField)
			}
		})
	}
	if n := calls.Service("CloudFormation"); n != 0 {
		t.Errorf("bad options reached CloudFormation (%d calls)", n)
	}
}

// A changed template (not only changed parameters) updates the stack in place; a template moto cannot
// create is an error naming the stack. Small templates with unique names keep these off the real stack.
func TestDeployTemplateChangesAndFailuresAgainstMoto(t *testing.T) {
	ctx := context.Background()
	cfg := awstest.Config(t)
	cf := cloudformation.NewFromConfig(cfg)
	queue := awstest.Name(t, "deploy-q")
	tmpl := func(visibility int) []byte {
		return []byte(`AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: ` + queue + `
      SqsManagedSseEnabled: true
      VisibilityTimeout: ` + strconv.Itoa(visibility) + `
`)
	}
	opts := Options{StackName: awstest.Name(t, "small"), PollInterval: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	visibilityOf := func() string {
		t.Helper()
		client := sqs.NewFromConfig(cfg)
		u, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(queue)})
		if err != nil {
			t.Fatalf("queue: %v", err)
		}
		a, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: u.QueueUrl,
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameVisibilityTimeout}})
		if err != nil {
			t.Fatalf("attributes: %v", err)
		}
		return a.Attributes["VisibilityTimeout"]
	}

	// This template has none of thingpipe's outputs: the stack is created, then reading its outputs fails.
	_, err := deployTemplate(ctx, cf, tmpl(30), opts)
	var oe *OutputsError
	if !errors.As(err, &oe) || len(oe.Missing) != len((&Outputs{}).outputFields()) {
		t.Fatalf("Deploy of a foreign template: %v, want an OutputsError listing every output", err)
	}
	if got := visibilityOf(); got != "30" {
		t.Fatalf("VisibilityTimeout = %s after create, want 30", got)
	}
	if _, err := deployTemplate(ctx, cf, tmpl(45), opts); !errors.As(err, &oe) {
		t.Fatalf("update: %v", err)
	}
	if got := visibilityOf(); got != "45" {
		t.Errorf("VisibilityTimeout = %s after a template change, want 45", got)
	}

	bad := []byte(`AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: ` + awstest.Name(t, "deploy-bad") + `
      RedrivePolicy:
        deadLetterTargetArn: arn:aws:sqs:us-east-1:123456789012:no-such-queue
        maxReceiveCount: 3
`)
	badOpts := opts
	badOpts.StackName = awstest.Name(t, "bad")
	_, err = deployTemplate(ctx, cf, bad, badOpts)
	if err == nil || !strings.Contains(err.Error(), badOpts.StackName) {
		t.Fatalf("Deploy of a failing template: %v, want an error naming stack %s", err, badOpts.StackName)
	}
	// moto creates stacks synchronously and does not roll back: the failed stack stays
	// CREATE_IN_PROGRESS for good. A retry must end at its Timeout, naming that state, not hang.
	retry := badOpts
	retry.Timeout = 300 * time.Millisecond
	_, err = deployTemplate(ctx, cf, bad, retry)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "CREATE_IN_PROGRESS") {
		t.Errorf("retry after moto's failed create: %v, want a timeout naming CREATE_IN_PROGRESS", err)
	}
}
