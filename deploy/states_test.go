package deploy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/smithy-go"
)

// fakeCF scripts CloudFormation's answers, for the stack states moto cannot produce (operations in
// progress, rollbacks, failed updates). The moto integration test covers the real API.
type fakeCF struct {
	// statuses DescribeStacks reports, one per call; the last one repeats. Empty: no stack.
	statuses  []cftypes.StackStatus
	params    map[string]string
	template  string
	outputs   map[string]string
	events    []cftypes.StackEvent
	updateErr error
	// afterCreate replaces statuses once CreateStack is called.
	afterCreate []cftypes.StackStatus

	describes, creates, updates int
}

func (f *fakeCF) DescribeStacks(_ context.Context, in *cloudformation.DescribeStacksInput, _ ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error) {
	f.describes++
	if len(f.statuses) == 0 {
		return nil, &smithy.GenericAPIError{Code: "ValidationError", Message: "Stack with id " + aws.ToString(in.StackName) + " does not exist"}
	}
	st := f.statuses[0]
	if len(f.statuses) > 1 {
		f.statuses = f.statuses[1:]
	}
	s := cftypes.Stack{StackName: in.StackName, StackId: aws.String("id-" + aws.ToString(in.StackName)), StackStatus: st}
	for k, v := range f.params {
		s.Parameters = append(s.Parameters, cftypes.Parameter{ParameterKey: aws.String(k), ParameterValue: aws.String(v)})
	}
	for k, v := range f.outputs {
		s.Outputs = append(s.Outputs, cftypes.Output{OutputKey: aws.String(k), OutputValue: aws.String(v)})
	}
	return &cloudformation.DescribeStacksOutput{Stacks: []cftypes.Stack{s}}, nil
}

func (f *fakeCF) DescribeStackEvents(context.Context, *cloudformation.DescribeStackEventsInput, ...func(*cloudformation.Options)) (*cloudformation.DescribeStackEventsOutput, error) {
	return &cloudformation.DescribeStackEventsOutput{StackEvents: f.events}, nil
}

func (f *fakeCF) GetTemplate(context.Context, *cloudformation.GetTemplateInput, ...func(*cloudformation.Options)) (*cloudformation.GetTemplateOutput, error) {
	return &cloudformation.GetTemplateOutput{TemplateBody: aws.String(f.template)}, nil
}

func (f *fakeCF) CreateStack(context.Context, *cloudformation.CreateStackInput, ...func(*cloudformation.Options)) (*cloudformation.CreateStackOutput, error) {
	f.creates++
	f.statuses = f.afterCreate
	return &cloudformation.CreateStackOutput{}, nil
}

func (f *fakeCF) UpdateStack(context.Context, *cloudformation.UpdateStackInput, ...func(*cloudformation.Options)) (*cloudformation.UpdateStackOutput, error) {
	f.updates++
	return &cloudformation.UpdateStackOutput{}, f.updateErr
}

func fullOutputs() map[string]string {
	m := map[string]string{}
	for k := range (&Outputs{}).outputFields() {
		m[k] = "value-of-" + k
	}
	return m
}

func defaultParams(t *testing.T) map[string]string {
	t.Helper()
	tmpl, err := parseTemplate(Template())
	if err != nil {
		t.Fatal(err)
	}
	ps, err := templateParameters(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	m, err := resolveParameters(ps, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func failedEvent(at time.Time, id, status, reason string) cftypes.StackEvent {
	return cftypes.StackEvent{EventId: aws.String(id + status), LogicalResourceId: aws.String(id), ResourceType: aws.String("AWS::SQS::Queue"),
		ResourceStatus: cftypes.ResourceStatus(status), ResourceStatusReason: aws.String(reason), Timestamp: aws.Time(at)}
}

func TestDeployStackStates(t *testing.T) {
	now := time.Now()
	current := string(Template())
	tests := []struct {
		name                     string
		cf                       fakeCF
		timeout                  time.Duration
		wantCreates, wantUpdates int
		wantErr                  string // substring; "" for success
		wantStatus               string // StackError.Status when an error
	}{
		{name: "missing stack is created", cf: fakeCF{afterCreate: []cftypes.StackStatus{"CREATE_IN_PROGRESS", "CREATE_COMPLETE"}}, wantCreates: 1},
		{name: "failed creation rolls back", cf: fakeCF{afterCreate: []cftypes.StackStatus{"CREATE_IN_PROGRESS", "ROLLBACK_IN_PROGRESS", "ROLLBACK_COMPLETE"},
			events: []cftypes.StackEvent{failedEvent(now, "ArchiveBucket", "CREATE_FAILED", "thingpipe-archive already exists")}},
			wantCreates: 1, wantErr: "ArchiveBucket (AWS::SQS::Queue): thingpipe-archive already exists", wantStatus: "ROLLBACK_COMPLETE"},
		{name: "stack deleted by a rollback on create", cf: fakeCF{afterCreate: nil}, wantCreates: 1,
			wantErr: "DELETE_COMPLETE", wantStatus: "DELETE_COMPLETE"},
		{name: "operation in progress is waited for, then found current",
			cf: fakeCF{statuses: []cftypes.StackStatus{"UPDATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "UPDATE_COMPLETE"}, template: current}},
		{name: "template changed: update", cf: fakeCF{statuses: []cftypes.StackStatus{"CREATE_COMPLETE", "UPDATE_IN_PROGRESS", "UPDATE_COMPLETE"}, template: "old"}, wantUpdates: 1},
		{name: "no updates to perform is success",
			cf: fakeCF{statuses: []cftypes.StackStatus{"UPDATE_COMPLETE"}, template: "same but reformatted",
				updateErr: &smithy.GenericAPIError{Code: "ValidationError", Message: "No updates are to be performed."}}, wantUpdates: 1},
		{name: "other update error", cf: fakeCF{statuses: []cftypes.StackStatus{"UPDATE_COMPLETE"}, template: "old",
			updateErr: &smithy.GenericAPIError{Code: "InsufficientCapabilitiesException", Message: "Requires capabilities"}},
			wantUpdates: 1, wantErr: "Requires capabilities"},
		{name: "failed update reports the first failed resource",
			cf: fakeCF{statuses: []cftypes.StackStatus{"UPDATE_COMPLETE", "UPDATE_ROLLBACK_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE"}, template: "old",
				events: []cftypes.StackEvent{
					failedEvent(now.Add(2*time.Second), "ProvisioningQueue", "UPDATE_FAILED", "Resource update cancelled"),
					failedEvent(now.Add(time.Second), "BindingQueue", "UPDATE_FAILED", "boom: access denied"),
					failedEvent(now.Add(-time.Hour), "OldQueue", "CREATE_FAILED", "history, not this update"),
				}},
			wantUpdates: 1, wantErr: "BindingQueue (AWS::SQS::Queue): boom: access denied", wantStatus: "UPDATE_ROLLBACK_COMPLETE"},
		{name: "rolled-back creation needs an operator", cf: fakeCF{statuses: []cftypes.StackStatus{"ROLLBACK_COMPLETE"}},
			wantErr: "delete the stack", wantStatus: "ROLLBACK_COMPLETE"},
		{name: "unexecuted change set is not waited for", cf: fakeCF{statuses: []cftypes.StackStatus{"REVIEW_IN_PROGRESS"}},
			wantErr: "never executed", wantStatus: "REVIEW_IN_PROGRESS"},
		{name: "failed rollback needs an operator", cf: fakeCF{statuses: []cftypes.StackStatus{"UPDATE_ROLLBACK_FAILED"}},
			wantErr: "UPDATE_ROLLBACK_FAILED", wantStatus: "UPDATE_ROLLBACK_FAILED"},
		{name: "stuck in progress times out", cf: fakeCF{statuses: []cftypes.StackStatus{"UPDATE_IN_PROGRESS"}}, timeout: 50 * time.Millisecond,
			wantErr: "context deadline exceeded"},
		{name: "outputs of another template", cf: fakeCF{statuses: []cftypes.StackStatus{"CREATE_COMPLETE"}, template: current},
			wantErr: "has no output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cf := tt.cf
			cf.params = defaultParams(t)
			if tt.name != "outputs of another template" {
				cf.outputs = fullOutputs()
			}
			opts := Options{PollInterval: time.Millisecond, Timeout: tt.timeout, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			out, err := deployTemplate(context.Background(), &cf, Template(), opts)
			if cf.creates != tt.wantCreates || cf.updates != tt.wantUpdates {
				t.Errorf("creates/updates = %d/%d, want %d/%d", cf.creates, cf.updates, tt.wantCreates, tt.wantUpdates)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Deploy: %v", err)
				}
				if out.ArchiveBucket != "value-of-ArchiveBucketName" || out.StackID != "id-thingpipe" {
					t.Errorf("outputs not read: %+v", out)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want %q", err, tt.wantErr)
			}
			if tt.wantStatus != "" {
				var se *StackError
				if !errors.As(err, &se) || se.Status != tt.wantStatus {
					t.Errorf("error %v is not a StackError with status %s", err, tt.wantStatus)
				}
			}
		})
	}
}
